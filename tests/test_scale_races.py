"""Races between processes' writers on PostgreSQL (marked ``postgres``; a fresh database):
threads on connections of their own race exactly as processes do at the database.

- six audit writers flushing their first batches at once, before the chain's head row
  exists, still make one valid chain with every row;
- eight workers answering one approval, then eight consuming it: one of each wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from closeguard.guardrails import Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.errors import ApprovalError
from tests._pg import fresh_database

pytestmark = pytest.mark.postgres

WRITERS, ROWS = 6, 200


@pytest.fixture
def pg_store() -> Iterator[Store]:
    with fresh_database() as url:
        store = Store(url)
        yield store
        store.dispose()


def _together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(i)`` for i < n on n threads released at the same moment; results or errors."""
    gate = threading.Barrier(n)

    def run(i: int) -> Any:
        gate.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_audit_writers_make_one_valid_chain(pg_store: Store) -> None:
    def write(i: int) -> int:
        log = AuditLog(pg_store, batch_size=50, max_delay=60)
        for n in range(ROWS):
            log.append({"method": "GET", "path": f"/lead/{i}-{n}/", "decision": "allow"})
        log.close()
        return ROWS

    results = _together(WRITERS, write)
    assert results == [ROWS] * WRITERS, [r for r in results if r != ROWS][:1]
    log = AuditLog(pg_store)
    report = log.verify()
    assert report.ok, report.problems[:3]
    assert log.head()[0] == WRITERS * ROWS


def test_an_approval_is_answered_once_and_used_once(pg_store: Store) -> None:
    approvals = Approvals(pg_store)
    call = classify("DELETE", "/lead/lead_1/")
    pending = approvals.request(call, method="DELETE", path="/lead/lead_1/")
    answers = _together(8, lambda i: approvals.approve(pending.id, by=f"person{i}"))
    won = [a for a in answers if not isinstance(a, Exception)]
    assert len(won) == 1 and all(isinstance(a, ApprovalError) for a in answers if a not in won)
    assert _together(8, lambda i: approvals.consume(pending.id)).count(True) == 1
    used = approvals.get(pending.id)
    assert used is not None and used.status == "consumed" and used.decided_by == won[0].decided_by
