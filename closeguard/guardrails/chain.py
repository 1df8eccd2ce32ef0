"""The audit chain's rules, on the standard library and orjson only: what a row's hash
covers, and ``verify``, the walk that finds every changed, removed, added or reordered row.

Split from ``audit`` (the log that writes rows), so that ``closeguard audit verify`` checks a
SQLite store through ``closeguard.store.reader`` without importing SQLAlchemy; the log's own
``AuditLog.verify`` is the same walk on its store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from closeguard.guardrails.redact import canonical_json
from closeguard.store.records import AUDIT_COLUMNS, GENESIS

__all__ = [
    "ANCHOR",
    "CHAINED",
    "GENESIS",
    "AuditProblem",
    "ChainSource",
    "VerifyReport",
    "anchor_target",
    "link",
    "row_hash",
    "verify",
]

CHAINED = AUDIT_COLUMNS[:-1]
"""What a row's hash covers: every column of ``audit`` but the hash itself."""
ANCHOR = "anchor"
"""The ``decision`` of an anchor row: the rows up to ``args.through_seq`` were archived."""
_dumps = orjson.dumps
_SORTED = orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256


class ChainSource(Protocol):
    """Where ``verify`` reads the log: ``AuditLog``, or the standard-library reader."""

    def rows(self) -> Iterator[dict[str, Any]]: ...

    def head(self) -> tuple[int, str]: ...

    def get(self, seq: int) -> dict[str, Any] | None: ...


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The chain hash of ``row`` after ``prev_hash``: sha256 over the chained columns' values.

    The values are hashed as a JSON array in ``CHAINED`` order, which is canonical because
    ``args`` is stored as canonical JSON text and every other column is a scalar.
    """
    return link(prev_hash, [row.get(k) for k in CHAINED])


def link(prev_hash: str, values: Sequence[Any]) -> str:
    """``sha256((prev_hash + canonical_json(values)).encode())``, without the detours.

    orjson's bytes with sorted keys are ``canonical_json``'s bytes whenever orjson needs no
    ``default``, so they are hashed as they come; whatever orjson refuses (values it cannot
    serialize, integers past 64 bits) takes ``canonical_json`` itself.
    """
    try:
        data = _dumps(values, option=_SORTED)
    except TypeError:
        data = canonical_json(list(values)).encode()
    return _sha256(prev_hash.encode() + data).hexdigest()


@dataclass(frozen=True)
class AuditProblem:
    """One break in the chain: where (``seq``), what kind, in words."""

    seq: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """``first_seq``: the oldest row in the store (above 1 after a prune); ``anchor``: the
    anchor row that vouches for the rows before it; ``notes``: what was not checked."""

    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    problems: tuple[AuditProblem, ...]
    first_seq: int = 1
    anchor: int | None = None
    notes: tuple[str, ...] = ()


def anchor_target(row: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(through_seq, through_hash)`` an anchor row records; None for any other row.

    Raises ``ValueError`` for an anchor row whose ``args`` do not say both.
    """
    if row.get("decision") != ANCHOR:
        return None
    try:
        args = orjson.loads(row["args"])
        through, digest = int(args["through_seq"]), str(args["through_hash"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"anchor row {row.get('seq')} does not name the rows it archived") from exc
    if len(digest) != 64:
        raise ValueError(f"anchor row {row.get('seq')} records a malformed hash")
    return through, digest


def verify(source: ChainSource, *, expect_head: tuple[int, str] | None = None) -> VerifyReport:
    """Walk the chain; every problem names the ``seq`` where it shows.

    A chain that starts after seq 1 (pruned) must hold an anchor row recording the
    hash of the row just before its first one; the archived rows themselves are proven
    by ``closeguard.guardrails.archive.verify_archive``.
    """
    problems: list[AuditProblem] = []
    anchors: list[tuple[int, tuple[int, str]]] = []
    first: dict[str, Any] | None = None
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in source.rows():
        count += 1
        seq = int(row["seq"])
        if first is None:
            first = row
            if seq > 1:
                prev_hash, expected_seq = str(row["prev_hash"]), seq
        if row["decision"] == ANCHOR:
            try:
                target = anchor_target(row)
            except ValueError as exc:
                problems.append(AuditProblem(seq, "anchor", str(exc)))
            else:
                if target is not None:
                    anchors.append((seq, target))
        if seq != expected_seq:
            kind = "gap" if seq > expected_seq else "order"
            problems.append(
                AuditProblem(
                    seq,
                    kind,
                    f"expected seq {expected_seq}, found {seq}: rows deleted or renumbered",
                )
            )
        if row["prev_hash"] != prev_hash:
            problems.append(
                AuditProblem(
                    seq,
                    "link",
                    f"row {seq} does not follow the row before it "
                    "(deleted, inserted or reordered rows)",
                )
            )
        if row_hash(row["prev_hash"], row) != row["hash"]:
            problems.append(
                AuditProblem(seq, "hash", f"row {seq} was changed after it was written")
            )
        prev_hash, expected_seq = row["hash"], seq + 1
    head_seq, head_hash = source.head()
    last_seq = expected_seq - 1
    if head_seq != last_seq or (count and head_hash != prev_hash):
        kind = "truncated" if head_seq > last_seq else "head"
        problems.append(
            AuditProblem(
                None if head_seq > last_seq else last_seq,
                kind,
                f"head says the log ends at seq {head_seq} ({head_hash[:12]}…), the rows end "
                f"at seq {last_seq} ({prev_hash[:12]}…)",
            )
        )
    first_seq = 1 if first is None else int(first["seq"])
    anchor: int | None = None
    notes: list[str] = []
    if first is not None and first_seq > 1:
        anchor = _check_start(source, first, anchors, problems, notes)
    if expect_head is not None and expect_head[0] < first_seq:
        notes.append(
            f"checkpoint seq {expect_head[0]} was archived by a prune: verify the archive "
            "file that holds it (closeguard audit verify --archive FILE)"
        )
    elif expect_head is not None:
        seq, digest = expect_head
        found = source.get(seq)
        if found is None or found["hash"] != digest:
            problems.append(
                AuditProblem(
                    seq,
                    "checkpoint",
                    f"checkpoint seq {seq} hash {digest[:12]}… is not in the log: history "
                    "was rewritten",
                )
            )
    return VerifyReport(
        not problems,
        count,
        head_seq,
        head_hash,
        tuple(problems),
        first_seq,
        anchor,
        tuple(notes),
    )


def _check_start(
    source: ChainSource,
    first: Mapping[str, Any],
    anchors: list[tuple[int, tuple[int, str]]],
    problems: list[AuditProblem],
    notes: list[str],
) -> int | None:
    """The anchor that vouches for the rows missing before ``first``, else a problem.

    An anchor recording the row just before ``first`` with ``first``'s ``prev_hash``
    proves the prefix was pruned on purpose. An anchor recording a later row still in
    the store (a prune stopped mid-way) vouches too if that row's hash is the one it
    recorded; every anchor whose row is still here is checked against it.
    """
    start = int(first["seq"])
    found = None
    for seq, (through, digest) in anchors:
        if through >= seq:
            problems.append(AuditProblem(seq, "anchor", f"anchor row {seq} names a later row"))
            continue
        if through == start - 1 and digest == first["prev_hash"]:
            found = found or seq
        elif through >= start:
            row = source.get(through)
            if row is None or row["hash"] != digest:
                problems.append(
                    AuditProblem(
                        seq,
                        "anchor",
                        f"anchor row {seq} records a hash for row {through} that the "
                        "row does not have",
                    )
                )
            elif found is None:
                found = seq
                notes.append(
                    f"rows {start}-{through} were archived but not yet removed "
                    "(a prune was interrupted: the next one removes them)"
                )
    if found is None:
        problems.append(
            AuditProblem(
                start,
                "gap",
                f"rows 1-{start - 1} are missing and no anchor row accounts for them "
                "(deleted without a prune)",
            )
        )
    return found
