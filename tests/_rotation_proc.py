"""One process taking round-robin turns, for ``tests/test_wf_rotation.py``.

Usage: python tests/_rotation_proc.py STORE_URL SCHEMA|- INDEX PROCESSES SUBJECTS
Takes the turns of subjects ``i`` with ``i % PROCESSES == INDEX``, then of 50 others
(taken by other processes too), in a shuffled order, as fast as it can.
"""

from __future__ import annotations

import random
import sys

from closeguard.store import Store
from closeguard.store.rotation import Rotation

USERS = ("user_a", "user_b", "user_c", "user_d")


def main(url: str, schema: str, index: int, processes: int, subjects: int) -> None:
    store = Store(url, schema=None if schema == "-" else schema)
    rng = random.Random(index)
    mine = [i for i in range(subjects) if i % processes == index]
    others = rng.sample([i for i in range(subjects) if i % processes != index], 50)
    order = mine + others
    rng.shuffle(order)
    rotation = Rotation(store)
    for subject in order:
        rotation.take("test-rotation", f"lead_{subject}", USERS)
    store.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
