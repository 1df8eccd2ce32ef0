"""Rotation turns taken in the transaction that claims a run: one trip less per run.

A workflow whose runs each take a turn (``ctx.turn``: new-lead-triage's owner) would spend a
store trip of its own on it. Once a run of a workflow took a turn in this process, the
rotation and users it turned on are known (``hint``); the worker's claims of that workflow's
first executions then take the run's subject's turn in the claim's own transaction
(``take_in``), and ``ctx.turn`` finds it there (``taken``) when it asks for the same
rotation over the same users (else it takes the turn itself, as without a hint). A subject
takes one turn whatever happens (``Rotation``), so a turn taken ahead for a run that then
fails is its retry's, and a run whose lead is gone takes none ahead. A workflow one of whose
first executions completes without taking a turn is not hinted again: its turns depend on
the run, and taking them ahead would skew the rotation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Connection

from closeguard.store import Store
from closeguard.store.rotation import Rotation, Turn, rotation_key
from closeguard.store.runs import RunRow
from closeguard.workflows.definition import Workflow

__all__ = ["RunTurns"]


def _first(run: RunRow) -> bool:
    """The run's first execution (not a retry, not resumed after an approval)."""
    return run.attempts == 1 and not run.approval_id


class RunTurns:
    """The turns a worker's claims took ahead, per run (see the module doc)."""

    def __init__(self, store: Store) -> None:
        self.rotation = Rotation(store)
        self._hints: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._off: set[str] = set()
        self._taken: dict[str, tuple[str, Turn]] = {}
        self._turned: set[str] = set()

    def hint(self, workflow: str, run_id: str, rotation: str, users: Sequence[str]) -> None:
        """A run of ``workflow`` took its turn in ``rotation`` over ``users``."""
        self._turned.add(run_id)
        if workflow not in self._off:
            self._hints[workflow] = (rotation, tuple(sorted(set(users))))

    def take_in(self, conn: Connection, run: RunRow, workflows: Mapping[str, Workflow]) -> None:
        """In the claim's transaction (its store trip): take ``run``'s turn if its workflow
        has a hint and this is its first execution on a lead that is still there."""
        hint = self._hints.get(run.workflow)
        workflow = workflows.get(run.workflow)
        if hint is None or workflow is None or not _first(run):
            return
        fate = run.fate
        if fate is not None and (fate.gone or (fate.merged_from and not workflow.follow_merges)):
            return
        subject = workflow.lead_for(run.payload.get("event")) or run.id
        self._taken[run.id] = (hint[0], self.rotation.take_in(conn, hint[0], subject, hint[1]))

    def taken(self, run_id: str, rotation: str, subject: str, users: Sequence[str]) -> Turn | None:
        """The turn the run's claim took for ``subject`` in ``rotation`` over ``users``."""
        found = self._taken.pop(run_id, None)
        if found is None or found[0] != rotation:
            return None
        turn = found[1]
        if turn.subject != subject or turn.key != rotation_key(rotation, users):
            return None
        return turn

    def settled(self, run: RunRow, completed: bool) -> None:
        """The run's execution is over: a first one that completed without a turn turns
        its workflow's hint off."""
        self._taken.pop(run.id, None)
        turned = run.id in self._turned
        self._turned.discard(run.id)
        if completed and not turned and _first(run):
            self._off.add(run.workflow)
            self._hints.pop(run.workflow, None)
