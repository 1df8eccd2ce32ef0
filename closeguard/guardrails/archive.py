"""Audit archive files: the rows a prune removed, as JSON lines, hashes included.

``write_archive`` writes rows ``first``..``last`` to ``audit-<first>-<last>.jsonl`` (one
JSON object a line, every column of ``audit``, keys sorted), checking the chain as it goes
so a broken chain is never archived and removed; it writes a ``.part`` file, syncs it and
renames it, so a file with the final name is always whole. ``verify_archive`` proves files
offline: each row's hash, the links between rows and between consecutive files, and, when
the store is at hand, the link to the anchor row (hash of the last archived row, and the
file's sha256) or to the row that follows the archive.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from closeguard.guardrails.audit import GENESIS, AuditLog, AuditProblem, anchor_target
from closeguard.guardrails.chain import link
from closeguard.store.audit import COLUMNS
from closeguard.tools.errors import StoreError

__all__ = ["ArchiveFile", "ArchiveReport", "archive_name", "verify_archive", "write_archive"]

_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True)
class ArchiveFile:
    """A written archive: where, which rows, the last row's hash and the file's sha256."""

    path: Path
    first: int
    last: int
    rows: int
    last_hash: str
    sha256: str


@dataclass(frozen=True)
class ArchiveReport:
    """What ``verify_archive`` proved. ``linked``: how the files join the store's chain
    (None when the store no longer holds what would show it)."""

    ok: bool
    rows: int
    first: int | None
    last: int | None
    last_hash: str | None
    linked: str | None
    problems: tuple[AuditProblem, ...]
    notes: tuple[str, ...] = field(default=())


def archive_name(first: int, last: int) -> str:
    return f"audit-{first}-{last}.jsonl"


def write_archive(
    batches: Iterable[Sequence[Sequence[Any]]],
    folder: Path,
    first: int,
    last: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> ArchiveFile:
    """Write the rows of ``batches`` (each row a tuple in ``COLUMNS`` order, seq ``first``
    to ``last`` in order) to ``folder``; raises ``StoreError`` (leaving no file) if they
    are not exactly those rows, unbroken."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive_name(first, last)
    part = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    expected, prev, count = first, None, 0
    try:
        with part.open("wb") as out:
            for batch in batches:
                lines = []
                for row in batch:
                    problem = _link_problem(row, expected, prev)
                    if problem:
                        raise StoreError(
                            f"the audit chain is broken at seq {row[0]} ({problem}): nothing "
                            "was pruned; see closeguard audit verify"
                        )
                    lines.append(orjson.dumps(dict(zip(COLUMNS, row, strict=True)), option=_LINE))
                    prev, expected = str(row[-1]), int(row[0]) + 1
                data = b"".join(lines)
                out.write(data)
                digest.update(data)
                count += len(batch)
                if progress is not None:
                    progress(len(batch))
            if expected != last + 1 or prev is None:
                raise StoreError(
                    f"audit rows {first}-{last} changed while they were archived "
                    f"(read up to {expected - 1}): nothing was pruned"
                )
            out.flush()
            os.fsync(out.fileno())
        part.replace(target)
        _sync_folder(folder)
    finally:
        part.unlink(missing_ok=True)
    return ArchiveFile(target, first, last, count, prev, digest.hexdigest())


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable before the rows it holds are deleted."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_problem(row: Sequence[Any], expected: int, prev: str | None) -> str | None:
    """What is wrong with ``row`` (a tuple in ``COLUMNS`` order) at this place in the
    chain, or None."""
    seq, prev_hash = int(row[0]), str(row[-2])
    if seq != expected:
        return f"expected seq {expected}, found {seq}"
    if seq == 1 and prev_hash != GENESIS:
        return "the first row does not start from the genesis hash"
    if prev is not None and prev_hash != prev:
        return "it does not follow the row before it"
    if link(prev_hash, row[:-1]) != row[-1]:
        return "it was changed after it was written"
    return None


@dataclass
class _Walk:
    problems: list[AuditProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    first: int | None = None
    last: int | None = None
    last_hash: str | None = None


def _read(path: Path, walk: _Walk) -> tuple[int | None, int | None, str]:
    """Check one file's rows, continuing ``walk``; the file's first and last seq and its
    sha256."""
    digest = hashlib.sha256()
    file_first: int | None = None
    file_last: int | None = None
    prev = None
    with path.open("rb") as stream:
        for number, line in enumerate(stream, 1):
            digest.update(line)
            try:
                row = orjson.loads(line)
                missing = [c for c in COLUMNS if c not in row]
                seq = int(row["seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                walk.problems.append(
                    AuditProblem(None, "format", f"{path.name} line {number}: not an audit row")
                )
                continue
            if missing:
                walk.problems.append(
                    AuditProblem(seq, "format", f"{path.name}: row {seq} lacks {missing}")
                )
                continue
            if file_first is None:
                file_first = seq
                if walk.last is not None and seq != walk.last + 1:
                    walk.problems.append(
                        AuditProblem(seq, "gap", f"{path.name} starts at {seq}, after {walk.last}")
                    )
                elif walk.last_hash is not None:
                    prev = walk.last_hash
                elif seq > 1:
                    walk.notes.append(
                        f"{path.name} starts at seq {seq}: its link to row {seq - 1} is "
                        "proven by the archive that holds that row"
                    )
            elif seq != (file_last or 0) + 1:
                kind = "gap" if seq > (file_last or 0) + 1 else "order"
                walk.problems.append(
                    AuditProblem(seq, kind, f"{path.name}: expected seq {(file_last or 0) + 1}")
                )
            problem = _link_problem([row[c] for c in COLUMNS], seq, prev)
            if problem:
                walk.problems.append(AuditProblem(seq, _kind(problem), f"row {seq}: {problem}"))
            prev, file_last = str(row["hash"]), seq
            walk.rows += 1
    if file_first is None:
        walk.problems.append(AuditProblem(None, "format", f"{path.name} holds no rows"))
    else:
        walk.first = file_first if walk.first is None else walk.first
        walk.last, walk.last_hash = file_last, prev
    return file_first, file_last, digest.hexdigest()


def _kind(problem: str) -> str:
    return "hash" if "changed" in problem else "link"


def verify_archive(paths: Sequence[Path], log: AuditLog | None = None) -> ArchiveReport:
    """Prove archive files (in the order given, each continuing the one before) and, with
    ``log``, their link to the store's chain."""
    walk = _Walk()
    digests: dict[str, tuple[int | None, str]] = {}
    for path in paths:
        last, digest = _read(path, walk)[1:]
        digests[path.name] = (last, digest)
    linked = None
    if log is not None and walk.last is not None and walk.last_hash is not None:
        linked = _link_to_store(log, walk, digests)
    return ArchiveReport(
        not walk.problems,
        walk.rows,
        walk.first,
        walk.last,
        walk.last_hash,
        linked,
        tuple(walk.problems),
        tuple(walk.notes),
    )


def _link_to_store(
    log: AuditLog, walk: _Walk, digests: Mapping[str, tuple[int | None, str]]
) -> str | None:
    """How the archive's last row joins the store: through the anchor that recorded it
    (hash and file digest checked), or as the ``prev_hash`` of the row after it."""
    assert walk.last is not None
    for anchor in log.anchors():
        try:
            target = anchor_target(anchor)
        except ValueError:
            continue
        if target is None or target[0] != walk.last:
            continue
        seq = int(anchor["seq"])
        if target[1] != walk.last_hash:
            walk.problems.append(
                AuditProblem(
                    walk.last,
                    "anchor",
                    f"anchor row {seq} recorded another hash for row {walk.last}: the "
                    "archive was changed",
                )
            )
            return None
        recorded = orjson.loads(anchor["args"])
        name, sha = recorded.get("archive"), recorded.get("sha256")
        if name in digests and sha and digests[name][1] != sha:
            walk.problems.append(
                AuditProblem(
                    walk.last,
                    "anchor",
                    f"{name} is not the file anchor row {seq} recorded (sha256 differs)",
                )
            )
            return None
        return f"anchor row {seq}"
    following = log.get(walk.last + 1)
    if following is not None:
        if following["prev_hash"] != walk.last_hash:
            walk.problems.append(
                AuditProblem(
                    walk.last + 1,
                    "link",
                    f"row {walk.last + 1} in the store does not follow the archive's last row",
                )
            )
            return None
        return f"row {walk.last + 1}"
    walk.notes.append(
        "the store holds neither the anchor of this archive nor the row after it (pruned "
        "since): the files' own chain is proven, their link to the store is not"
    )
    return None
