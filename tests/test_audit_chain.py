"""The audit chain: honest logs verify; every kind of tampering is found and located."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import AuditLog, row_hash
from closeguard.guardrails.audit import GENESIS
from closeguard.store import Store


def fill(store: Store, n: int = 6, batch_size: int = 4) -> AuditLog:
    log = AuditLog(store, batch_size=batch_size, max_delay=3600)
    for i in range(n):
        log.append(
            {
                "actor": "bot",
                "run_id": "r",
                "call_id": f"c{i}",
                "attempt": 1,
                "policy": "p",
                "endpoint": "lead.get",
                "method": "GET",
                "path": f"/lead/lead_{i}/",
                "access": "read",
                "decision": "allow",
                "rule": "grants.lead",
                "args": {"body": {}, "params": {"i": i}},
                "status_code": 200,
                "latency_us": 100 + i,
            }
        )
    log.flush()
    return log


def sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def kinds(log: AuditLog) -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in log.verify().problems]


def test_honest_log_verifies_and_batches_chain_across_flushes(store: Store) -> None:
    log = fill(store, n=10, batch_size=3)
    report = log.verify()
    assert report.ok and report.rows == 10 and report.head_seq == 10
    rows = list(log.rows())
    assert [r["seq"] for r in rows] == list(range(1, 11))
    assert rows[0]["prev_hash"] == GENESIS
    for prev, row in itertools.pairwise(rows):
        assert row["prev_hash"] == prev["hash"] == row_hash(prev["prev_hash"], prev)
    assert log.head() == (10, rows[-1]["hash"])


def test_nothing_is_lost_on_close(store: Store) -> None:
    log = AuditLog(store, batch_size=1000, max_delay=3600)
    log.append({"method": "GET", "path": "/lead/", "decision": "allow", "args": {}})
    assert AuditLog(store).head()[0] == 0  # still buffered
    log.close()
    assert AuditLog(store).head()[0] == 1


def test_edited_row_is_found(store: Store) -> None:
    log = fill(store)
    sql(store, "UPDATE audit SET decision = 'deny' WHERE seq = 3")
    assert kinds(log) == [(3, "hash")]


def test_edited_row_with_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    log = fill(store)
    row = log.get(3)
    assert row is not None
    row["path"] = "/lead/other/"
    sql(
        store,
        "UPDATE audit SET path = :p, hash = :h WHERE seq = 3",
        p=row["path"],
        h=row_hash(row["prev_hash"], row),
    )
    assert kinds(log) == [(4, "link")]


def test_deleted_row_is_found(store: Store) -> None:
    log = fill(store)
    sql(store, "DELETE FROM audit WHERE seq = 4")
    assert kinds(log) == [(5, "gap"), (5, "link")]


def test_swapped_rows_are_found(store: Store) -> None:
    log = fill(store)
    sql(store, "UPDATE audit SET seq = -1 WHERE seq = 2")
    sql(store, "UPDATE audit SET seq = 2 WHERE seq = 3")
    sql(store, "UPDATE audit SET seq = 3 WHERE seq = -1")
    found = kinds(log)
    assert (2, "link") in found and (2, "hash") in found and (3, "link") in found


def test_appended_row_is_found_even_with_a_valid_hash(store: Store) -> None:
    log = fill(store)
    last = log.get(6)
    assert last is not None
    forged = {**last, "seq": 7, "prev_hash": last["hash"], "path": "/lead/forged/"}
    forged["hash"] = row_hash(forged["prev_hash"], forged)
    cols = ", ".join(forged)
    sql(
        store, f"INSERT INTO audit ({cols}) VALUES ({', '.join(':' + k for k in forged)})", **forged
    )
    assert kinds(log) == [(7, "head")]


def test_truncated_tail_is_found(store: Store) -> None:
    log = fill(store)
    sql(store, "DELETE FROM audit WHERE seq >= 5")
    assert kinds(log) == [(None, "truncated")]


def test_full_rewrite_is_caught_only_by_an_outside_checkpoint(store: Store) -> None:
    log = fill(store)
    checkpoint = log.head()
    sql(store, "DELETE FROM audit")
    sql(store, "DELETE FROM audit_head")
    fill(store, n=6)  # a consistent but different history
    sql(store, "UPDATE audit SET path = '/lead/x/'")  # ...rehashed by the attacker:
    prev = GENESIS
    for row in list(log.rows()):
        digest = row_hash(prev, {**row, "prev_hash": prev})
        sql(
            store,
            "UPDATE audit SET prev_hash = :p, hash = :h WHERE seq = :s",
            p=prev,
            h=digest,
            s=row["seq"],
        )
        prev = digest
    sql(store, "UPDATE audit_head SET hash = :h", h=prev)
    assert log.verify().ok
    assert kinds_with(log, checkpoint) == [(6, "checkpoint")]


def kinds_with(log: AuditLog, checkpoint: tuple[int, str]) -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in log.verify(expect_head=checkpoint).problems]


def test_cli_verify_tail_show_export(store: Store, tmp_path: Path) -> None:
    fill(store)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "ok: 6 rows" in ok.output
    head = runner.invoke(app, ["audit", "head"]).output.strip()
    assert runner.invoke(app, ["audit", "verify", "--expect-head", head]).exit_code == 0
    tail = runner.invoke(app, ["audit", "tail", "-n", "2", "--json"])
    assert tail.exit_code == 0 and [r["seq"] for r in json.loads(tail.stdout)] == [5, 6]
    shown = runner.invoke(app, ["audit", "show", "3", "--json"])
    assert '"path": "/lead/lead_2/"' in shown.output
    assert runner.invoke(app, ["audit", "show", "99"]).exit_code == 1
    out = tmp_path / "audit.jsonl"
    exported = runner.invoke(app, ["audit", "export", "--format", "jsonl", "--out", str(out)])
    assert exported.exit_code == 0 and len(out.read_text().splitlines()) == 6

    sql(store, "UPDATE audit SET status_code = 500 WHERE seq = 2")
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "seq 2: [hash]" in bad.output
