"""The state grader: assertions on the final simulator state, and "nothing else changed"
checked with the state diff."""

from __future__ import annotations

from typing import Any

from closeguard.evals.format import Expect, StateCheck
from closeguard.evals.graders.common import Grade, Trial, lookup, matches
from closeguard.simulator.hashing import ObjectChange, Snapshot

__all__ = ["grade_state", "selected"]


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
    grade.figures["changes"] = trial.diff.summary()
    return grade
