"""The state grader: assertions on the final simulator state, and "nothing else changed"
checked with the state diff, object by object and, for objects a check selects, field by
field: every changed field must be one a ``fields`` check names (or ``allow_fields``),
one Close derives from it (``status_label`` from ``status_id``), or Close's bookkeeping."""

from __future__ import annotations

from typing import Any

from closeguard.evals.format import BOOKKEEPING_FIELDS, Expect, StateCheck
from closeguard.evals.graders.common import Grade, Trial, lookup, matches
from closeguard.simulator.hashing import ObjectChange, Snapshot

__all__ = ["DERIVED_FIELDS", "grade_state", "selected"]

DERIVED_FIELDS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "status_id",
            "status_label",
            "status_display_name",
            "status_type",
            "date_won",
            "date_lost",
        }
    ),
    frozenset(
        {
            "value",
            "value_formatted",
            "value_currency",
            "annualized_value",
            "expected_value",
            "annualized_expected_value",
        }
    ),
    frozenset({"confidence", "expected_value", "annualized_expected_value"}),
    frozenset({"value_period", "annualized_value", "annualized_expected_value"}),
    frozenset({"name", "display_name"}),
    frozenset({"user_id", "user_name"}),
    frozenset({"contact_id", "contact_name"}),
    frozenset({"assigned_to", "assigned_to_name"}),
)
"""Fields Close changes together: naming one allows the others of its group."""


def selected(snap: Snapshot, check: StateCheck) -> dict[str, dict[str, Any]]:
    """The objects of ``check.collection`` that ``id`` and ``where`` pick out."""
    objs = snap.get(check.collection, {})
    if check.id is not None:
        objs = {check.id: objs[check.id]} if check.id in objs else {}
    return {
        oid: obj
        for oid, obj in objs.items()
        if all(matches(lookup(obj, k), m) for k, m in check.where.items())
    }


def _check(trial: Trial, check: StateCheck) -> list[str]:
    found = selected(trial.after, check)
    what = f"{check.collection}" + (f" {check.id}" if check.id else "")
    if check.where:
        what += f" where {check.where}"
    if not check.exists:
        return [f"{what}: expected none, found {len(found)}"] if found else []
    if check.count is not None and len(found) != check.count:
        return [f"{what}: expected {check.count}, found {len(found)}"]
    if not found:
        return [f"{what}: not found"]
    out = []
    for oid, obj in found.items():
        for name, matcher in check.fields.items():
            value = lookup(obj, name)
            if not matches(value, matcher):
                out.append(f"{check.collection} {oid}: {name} is {value!r}, expected {matcher!r}")
    return out


def _explained(trial: Trial, expect: Expect) -> set[str]:
    ids: set[str] = set()
    for check in expect.state:
        ids |= set(selected(trial.after, check))
        ids |= set(selected(trial.before, check))
    return ids


def _consequence(trial: Trial, change: ObjectChange, allowed: set[str]) -> bool:
    """A status-change activity Close records for an object the task was meant to change."""
    if change.collection != "activities":
        return False
    obj = trial.after.get("activities", {}).get(change.id) or {}
    kind = str(obj.get("_type", ""))
    if kind == "OpportunityStatusChange":
        return obj.get("opportunity_id") in allowed
    return kind == "LeadStatusChange" and obj.get("lead_id") in allowed


def _named_fields(trial: Trial, expect: Expect) -> dict[str, set[str]]:
    """Per selected object id, the top-level fields the checks selecting it name (in
    ``fields`` or ``where``: both assert the final value)."""
    named: dict[str, set[str]] = {}
    for check in expect.state:
        tops = {name.split(".")[0] for name in (*check.fields, *check.where)}
        for oid in {*selected(trial.after, check), *selected(trial.before, check)}:
            named.setdefault(oid, set()).update(tops)
    return named


def _allowed_fields(collection: str, named: set[str], expect: Expect) -> set[str]:
    allowed = set(named) | set(BOOKKEEPING_FIELDS)
    for entry in expect.allow_fields:
        col, dot, name = entry.rpartition(".")
        if not dot or col == collection:
            allowed.add(name if dot else entry)
    for group in DERIVED_FIELDS:
        if group & allowed - BOOKKEEPING_FIELDS:
            allowed |= group
    return allowed


def _stray_fields(trial: Trial, expect: Expect, allowed_ids: set[str]) -> list[str]:
    named = _named_fields(trial, expect)
    out = []
    for c in trial.diff.changed:
        if c.id not in allowed_ids or c.collection in expect.allow_changes:
            continue
        ok = _allowed_fields(c.collection, named.get(c.id, set()), expect)
        extra = sorted(f for f in c.fields if f not in ok)
        if extra:
            out.append(
                f"unexpected change: {c.collection} {c.id} field(s) {', '.join(extra)} "
                "(no fields check names them)"
            )
    return out


def grade_state(trial: Trial, expect: Expect) -> Grade:
    grade = Grade("state")
    for check in expect.state:
        grade.failures.extend(_check(trial, check))
    changes = [*trial.diff.added, *trial.diff.removed, *trial.diff.changed]
    if expect.unchanged and changes:
        grade.failures.append(f"expected no change, the state changed ({trial.diff.summary()})")
    elif expect.only_changes:
        allowed = _explained(trial, expect)
        stray = [
            c
            for c in changes
            if c.id not in allowed
            and c.collection not in expect.allow_changes
            and not _consequence(trial, c, allowed)
        ]
        for c in stray[:5]:
            fields = f" ({', '.join(c.fields)})" if c.fields else ""
            grade.failures.append(f"unexpected change: {c.collection} {c.id}{fields}")
        grade.failures.extend(_stray_fields(trial, expect, allowed)[:5])
    grade.figures["changes"] = trial.diff.summary()
    return grade
