"""Retention: ``store prune`` removes finished work, archives audit rows behind an anchor,
and leaves a chain (and an archive) that verify; unfinished work is never touched."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy import text
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import AuditLog, row_hash
from closeguard.guardrails.archive import verify_archive
from closeguard.store import Store
from closeguard.store.jobs import JobRows
from closeguard.store.retention import RetentionRows
from closeguard.tools.errors import ConfigError, StoreError
from closeguard.workflows.retention import parse_age, parse_before, prune
from tests._pg import schema_store
from tests._retention import (
    CUTOFF,
    NOW,
    _run,
    archives,
    audit_seqs,
    effect_runs,
    event_ids,
    put_checkpoint,
    run_ids,
    seed,
    table_counts,
)

runner = CliRunner()


def _threads(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}


@pytest.fixture
def checkpoints(store: Store) -> Iterator[Path]:
    path = Path(str(store.url.database)).parent / "checkpoints.db"
    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        saver = SqliteSaver(conn)
        saver.setup()
        yield path


def _fill_threads(path: Path, threads: list[str]) -> None:
    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        saver = SqliteSaver(conn)
        for thread in threads:
            put_checkpoint(saver, thread)


def test_prune_on_sqlite_removes_finished_work_and_keeps_the_rest(
    store: Store, checkpoints: Path, tmp_path: Path
) -> None:
    seeded = seed(store)
    old, unfinished = seeded.old_runs, seeded.unfinished
    rule_thread = "follow-up/ev_follow-up_0/summarize"
    _fill_threads(checkpoints, [*old, rule_thread, *unfinished, *seeded.kept_runs, "chat-thread-1"])
    before = AuditLog(store).verify()
    assert before.ok

    report = prune(store, CUTOFF, archive_dir=tmp_path / "arch", now=NOW)

    assert report.runs == len(old) and report.effects == len(old)
    assert report.checkpoint_threads == len(old) + 1
    assert run_ids(store) == {*unfinished, *seeded.kept_runs}
    assert effect_runs(store) == {unfinished[0]}
    assert _threads(checkpoints) == {*unfinished, *seeded.kept_runs, "chat-thread-1"}
    assert report.inbox == len(seeded.old_events)
    assert event_ids(store) == set(seeded.kept_events)
    assert (report.audit_first, report.audit_last) == (1, seeded.old_audit)
    assert report.audit_held_by is not None and unfinished[0] in report.audit_held_by
    assert table_counts(store)["approvals"] == 1

    seqs = audit_seqs(store)
    assert seqs[0] == seeded.first_kept_audit and seqs[-1] == report.anchor
    after = AuditLog(store).verify()
    assert after.ok, after.problems
    assert after.first_seq == seeded.first_kept_audit and after.anchor == report.anchor

    [archive] = archives(tmp_path / "arch")
    assert archive.name == f"audit-1-{seeded.old_audit}.jsonl" and str(archive) == report.archive
    lines = archive.read_bytes().splitlines()
    assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, seeded.old_audit + 1))
    proof = verify_archive([archive], AuditLog(store))
    assert proof.ok and proof.linked == f"anchor row {report.anchor}"
    anchor = AuditLog(store).get(report.anchor)
    assert anchor is not None and anchor["decision"] == "anchor"
    recorded = json.loads(anchor["args"])
    assert recorded["through_seq"] == seeded.old_audit
    assert recorded["through_hash"] == orjson.loads(lines[-1])["hash"]


def test_a_second_prune_chains_its_archive_and_anchor_after_the_first(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store)
    folder = tmp_path / "arch"
    first = prune(store, CUTOFF, archive_dir=folder, now=NOW)
    store_rows = RunRowsFinisher(store)
    store_rows.finish_all()
    second = prune(store, CUTOFF.replace(year=CUTOFF.year + 5), archive_dir=folder, now=NOW)
    assert second.audit_first == seeded.first_kept_audit
    assert second.audit_held_by is not None and "approval" in second.audit_held_by
    assert AuditLog(store).verify().ok
    files = archives(folder)
    assert len(files) == 2
    both = verify_archive(sorted(files, key=lambda p: int(p.name.split("-")[1])), AuditLog(store))
    assert both.ok and both.first == 1 and both.last == second.audit_last
    assert first.anchor is not None


class RunRowsFinisher:
    """Ends the seeded unfinished runs, so the second prune is held only by the approval."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def finish_all(self) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(text("UPDATE runs SET status = 'completed' WHERE status <> 'completed'"))


def test_dry_run_counts_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    seeded = seed(store)
    counts = table_counts(store)
    head = AuditLog(store).head()
    report = prune(store, CUTOFF, archive_dir=tmp_path / "arch", dry_run=True, now=NOW)
    assert (report.runs, report.effects, report.inbox) == (5, 5, len(seeded.old_events))
    assert report.audit_rows == seeded.old_audit and report.anchor is None
    assert table_counts(store) == counts and AuditLog(store).head() == head
    assert not (tmp_path / "arch").exists()


def test_cli_prune_then_verify_and_verify_archive(store: Store, tmp_path: Path) -> None:
    seeded = seed(store)
    folder = tmp_path / "arch"
    dry = runner.invoke(app, ["store", "prune", "--older-than", "90d", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["audit_rows"] == seeded.old_audit
    done = runner.invoke(app, ["store", "prune", "--older-than", "90d", "--archive", str(folder)])
    assert done.exit_code == 0, done.output
    [archive] = archives(folder)
    assert f"archived to {archive}" in done.output
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "earlier rows archived" in ok.output, ok.output
    proven = runner.invoke(app, ["audit", "verify", "--archive", str(archive)])
    assert proven.exit_code == 0 and "linked to the store by anchor row" in proven.output

    lines = archive.read_text().splitlines()
    row = json.loads(lines[3])
    row["path"] = "/lead/lead_other/"
    lines[3] = json.dumps(row, sort_keys=True)
    archive.write_text("\n".join(lines) + "\n")
    tampered = runner.invoke(app, ["audit", "verify", "--archive", str(archive)])
    assert tampered.exit_code == 1 and "seq 4: [hash]" in tampered.output, tampered.output


def test_an_archive_rewritten_consistently_still_fails_against_the_anchor(
    store: Store, tmp_path: Path
) -> None:
    seed(store)
    prune(store, CUTOFF, archive_dir=tmp_path, now=NOW)
    [archive] = archives(tmp_path)
    rows = [orjson.loads(line) for line in archive.read_bytes().splitlines()]

    rows[2]["actor"] = "someone-else"
    prev = rows[1]["hash"]
    for row in rows[2:]:
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(prev, row)
    lines = (orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows)
    archive.write_bytes(b"".join(lines))
    alone = verify_archive([archive])
    assert alone.ok
    linked = verify_archive([archive], AuditLog(store))
    assert not linked.ok and linked.problems[0].kind == "anchor"


def test_rows_deleted_without_a_prune_fail_verify(store: Store, tmp_path: Path) -> None:
    seed(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit WHERE seq <= 5"))
    report = AuditLog(store).verify()
    assert not report.ok and [p.kind for p in report.problems] == ["gap"]


def test_a_prune_stopped_before_its_deletes_finished_still_verifies(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store)
    report = prune(store, CUTOFF, archive_dir=tmp_path, now=NOW)
    assert report.anchor is not None
    # rebuild the situation of a prune killed mid-delete: rows 11..30 still there
    copy = AuditLog(store)
    assert copy.verify().ok
    kept = [json.loads(line) for line in archives(tmp_path)[0].read_text().splitlines()]
    with store.engine.begin() as conn:
        for row in kept[10:]:
            columns = ", ".join(row)
            marks = ", ".join(f":{k}" for k in row)
            conn.execute(text(f"INSERT INTO audit ({columns}) VALUES ({marks})"), row)
    partial = AuditLog(store).verify()
    assert partial.ok and partial.first_seq == 11 and partial.notes, partial.problems
    again = prune(store, CUTOFF, archive_dir=tmp_path / "again", now=NOW)
    assert (again.audit_first, again.audit_last) == (11, seeded.old_audit)
    assert AuditLog(store).verify().ok


def test_a_held_lock_refuses_a_second_prune(store: Store, tmp_path: Path) -> None:
    import fcntl

    lock = Path(str(store.url.database)).with_suffix(".prune-lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="another prune"):
            prune(store, CUTOFF, archive_dir=tmp_path, now=NOW)


def test_cli_usage_errors_are_one_line(store: Store) -> None:
    both = runner.invoke(app, ["store", "prune", "--before", "2026-01-01", "--older-than", "9d"])
    assert both.exit_code == 2 and "either --before" in both.output
    bad = runner.invoke(app, ["store", "prune", "--older-than", "ninety"])
    assert bad.exit_code == 2 and "90d" in bad.output and "Traceback" not in bad.output
    retain = runner.invoke(app, ["run", "--retain", "forever", "--duration", "1"])
    assert retain.exit_code == 2 and "--retain" in retain.output
    assert "Traceback" not in retain.output
    missing = runner.invoke(app, ["audit", "verify", "--archive", "/nonexistent.jsonl"])
    assert missing.exit_code == 2 and "no archive file" in missing.output


def test_parse_age_and_date() -> None:
    assert parse_age("90d").days == 90 and parse_age("12h").total_seconds() == 43200
    assert parse_age("2w").days == 14
    with pytest.raises(ConfigError):
        parse_age("0d")
    assert parse_before("2026-09-01").isoformat() == "2026-09-01T00:00:00+00:00"
    assert parse_before("2026-09-01T12:00:00+02:00").hour == 10


def _jobs(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar_one())


def test_prune_on_postgres_removes_finished_work_jobs_and_checkpoints(tmp_path: Path) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import connect
    from psycopg.rows import dict_row

    with schema_store("cgret_") as store:
        seeded = seed(store)
        jobs = JobRows(store, now=lambda: NOW - 100 * 86400)
        jobs.enqueue([{**_run(i, "jobbed"), "lead_id": f"jl_{i}"} for i in range(3)])
        for _ in range(3):
            claimed = jobs.claim("w1", 60)
            assert claimed is not None
            jobs.settle(claimed.id, "w1", status="dead", error="gave up")
        assert _jobs(store) == 3
        conninfo = store.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with connect(
            conninfo,
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            options=f"-c search_path={store.schema},public",
        ) as conn:
            saver = PostgresSaver(conn)  # type: ignore[arg-type]
            saver.setup()
            for thread in [*seeded.old_runs, *seeded.unfinished]:
                put_checkpoint(saver, thread)

            report = prune(store, CUTOFF, archive_dir=tmp_path, now=NOW)

            left = {r["thread_id"] for r in conn.execute("SELECT thread_id FROM checkpoints")}
        assert left == set(seeded.unfinished)
        assert report.runs == 5 + 3 and report.checkpoint_threads == 5
        assert _jobs(store) == 0
        assert run_ids(store) == {*seeded.unfinished, *seeded.kept_runs}
        assert event_ids(store) == set(seeded.kept_events)
        assert audit_seqs(store)[0] == seeded.first_kept_audit
        assert AuditLog(store).verify().ok
        proof = verify_archive(archives(tmp_path), AuditLog(store))
        assert proof.ok and proof.linked == f"anchor row {report.anchor}"
        assert RetentionRows(store).count_runs(CUTOFF.timestamp()) == (0, 0)
        key = zlib.crc32(f"closeguard-prune:{store.schema}".encode())
        with store.engine.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            with pytest.raises(StoreError, match="another prune"):
                prune(store, CUTOFF, archive_dir=tmp_path, now=NOW)
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


async def test_run_retain_prunes_from_the_runtime_scheduler(store: Store, tmp_path: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from closeguard.workflows.runtime import Runtime, RuntimeConfig

    seeded = seed(store)
    runtime = Runtime(
        [],
        store=store,
        checkpointer=InMemorySaver(),
        api_key="test-key",
        config=RuntimeConfig(
            roles=frozenset({"scheduler"}),
            retain=90 * 86400.0,
            retain_archive=tmp_path / "arch",
            grace=1.0,
        ),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        for _ in range(200):
            if archives(tmp_path / "arch") and audit_seqs(store)[0] > 1:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert audit_seqs(store)[0] == seeded.first_kept_audit
    assert run_ids(store) == {*seeded.unfinished, *seeded.kept_runs}
    assert AuditLog(store).verify().ok
    assert verify_archive(archives(tmp_path / "arch"), AuditLog(store)).ok
    job = runtime.schedules.upkeep["upkeep:retention"]
    assert job.every == 86400.0
