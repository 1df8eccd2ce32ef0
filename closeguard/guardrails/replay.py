"""Policy changes tried on the past: re-decide recorded calls under a new policy.

``replay(store, policy)`` reads the audit log (never writes it, never calls Close) and
re-decides each logical call recorded under the policy of that name (or by ``actor``) with
the guard's own code: ``Guard.check`` on the call rebuilt from the row (method, path,
redacted arguments, and the ``scope`` the transport records: the run's triggered leads and
the per-run key), then the new policy's quotas through ``Quotas``, charged in the order
the calls were made, per-window limits on the windows of the calls' own times (counted in a
throwaway in-memory store, from the first call replayed). Outcomes compare as ``allow``,
``approve`` (asked a person) and ``deny``.

Each call is re-decided as if the calls before it went as recorded: a run the new policy
would have stopped early is not re-imagined. A call whose decision needs what the row does
not hold is *undecidable*, reported with the reason and never guessed: a ``when`` entry on
``status_label``/``status_type`` for a call that sets a status (the statuses of that day
are not recorded), an argument the policy reads that the log redacted or shortened, the
triggered leads of a run recorded before rows kept them, a per-run limit on a call made
outside any run before rows kept the transport's key.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from closeguard.guardrails.decision import Guard, RunContext
from closeguard.guardrails.policy import Policy
from closeguard.guardrails.quotas import Quotas, _applicable
from closeguard.guardrails.redact import REDACTED
from closeguard.tools.catalog import Call, classify
from closeguard.tools.errors import UnknownEndpoint

if TYPE_CHECKING:
    from closeguard.store import Store

__all__ = ["Change", "Outcome", "Replay", "Undecidable", "outcome_of", "replay"]

Outcome = Literal["allow", "approve", "deny"]
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_GUARD_OWN = frozenset({"when.statuses"})
"""Rules of rows the guard wrote for itself (the statuses read), not calls anyone made."""
_SHORTENED = re.compile(r"…\[\+\d+ chars\]$")
_WOULD_ASK = "dry run; enforce mode would ask approval"
_SPENT = "approval was used, revoked or expired"


def outcome_of(row: Mapping[str, Any]) -> Outcome:
    """What the recorded decision was, as an outcome (a dry run's says what it would be)."""
    decision, reason = row["decision"], str(row.get("reason") or "")
    if decision in ("approved", "approval_required"):
        return "approve"
    if decision == "dry_run":
        return "approve" if reason.startswith(_WOULD_ASK) else "allow"
    if decision == "deny":
        return "approve" if reason == _SPENT else "deny"
    return "allow"


def _quota_rule(rule: str | None) -> bool:
    return bool(rule) and str(rule).startswith("limits.")


@dataclass(frozen=True)
class Change:
    """A call the new policy decides differently."""

    seq: int
    ts: str
    actor: str | None
    run_id: str | None
    endpoint: str
    method: str
    path: str
    before: Outcome
    after: Outcome
    rule_before: str | None
    rule_after: str
    reason: str


@dataclass(frozen=True)
class Undecidable:
    """A call the row does not hold enough to re-decide, and why."""

    seq: int
    ts: str
    actor: str | None
    endpoint: str | None
    method: str
    path: str
    why: str


@dataclass
class Replay:
    """What the new policy would have done to the recorded calls."""

    policy: str
    selected: dict[str, str | None]
    calls: int = 0
    unchanged: int = 0
    changes: list[Change] = field(default_factory=list)
    undecidable: list[Undecidable] = field(default_factory=list)
    newly_limited: Counter[str] = field(default_factory=Counter)
    no_longer_limited: Counter[str] = field(default_factory=Counter)

    def count(self, after: Outcome) -> int:
        return sum(1 for c in self.changes if c.after == after)

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "unchanged": self.unchanged,
            "newly_denied": self.count("deny"),
            "newly_allowed": self.count("allow"),
            "newly_approval": self.count("approve"),
            "undecidable": len(self.undecidable),
            "quota": {
                "newly_limited": sum(self.newly_limited.values()),
                "no_longer_limited": sum(self.no_longer_limited.values()),
                "newly_limited_by_rule": dict(self.newly_limited),
                "no_longer_limited_by_rule": dict(self.no_longer_limited),
            },
        }

    def by_endpoint(self, examples: int = 3) -> list[dict[str, Any]]:
        """Changes grouped by endpoint and before -> after, most calls first, with the
        first ``examples`` seqs and the rule that decides now."""
        groups: dict[tuple[str, str, str], list[Change]] = {}
        for c in self.changes:
            groups.setdefault((c.endpoint, c.before, c.after), []).append(c)
        out = [
            {
                "endpoint": endpoint,
                "before": before,
                "after": after,
                "calls": len(found),
                "rules_after": sorted({c.rule_after for c in found}),
                "reason": found[0].reason,
                "examples": [c.seq for c in found[:examples]],
            }
            for (endpoint, before, after), found in groups.items()
        ]
        return sorted(out, key=lambda g: (-g["calls"], g["endpoint"], g["after"]))

    def as_json(self, examples: int = 3) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "selected": self.selected,
            "summary": self.summary(),
            "by_endpoint": self.by_endpoint(examples),
            "changes": [asdict(c) for c in self.changes],
            "undecidable": [asdict(u) for u in self.undecidable],
        }


def _args(row: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        data = json.loads(row["args"] or "{}")
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("params", {}), dict):
        return None
    body = data.get("body", {})
    if isinstance(body, dict) and "_unparsed_bytes" in body:
        return None
    return data


def _altered(value: Any) -> bool:
    """Whether the log masked or shortened ``value`` (or anything inside it)."""
    if isinstance(value, str):
        return value == REDACTED or _SHORTENED.search(value) is not None
    if isinstance(value, Mapping):
        return any(_altered(v) for v in value.values())
    if isinstance(value, list):
        return any(_altered(v) for v in value)
    return False


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


class _Replayer:
    """Re-decides the calls of one selection, in order, under ``policy``."""

    def __init__(self, policy: Policy, report: Replay) -> None:
        self.policy = policy
        self.guard = Guard(policy)
        self.report = report
        self.now = 0.0
        self._counters: Store | None = None
        if not policy.limits.per_window.empty:
            from closeguard.store import Store

            self._counters = Store("sqlite://")
        self.quotas = Quotas(policy, self._counters, lambda: self.now)
        self._tag = f"replay-{uuid.uuid4().hex[:8]}"
        self._runs: set[str] = set()

    def close(self) -> None:
        """Forget the per-run counts this replay made (``Quotas`` keeps them per process)."""
        with Quotas._runs_lock:
            for run in self._runs:
                Quotas._runs.pop((self.policy.name, run), None)
        if self._counters is not None:
            self._counters.dispose()

    def _undecidable(self, row: Mapping[str, Any], why: str, endpoint: str | None = None) -> None:
        self.report.undecidable.append(
            Undecidable(
                row["seq"],
                row["ts"],
                row["actor"],
                endpoint or row["endpoint"],
                row["method"],
                row["path"],
                why,
            )
        )

    def _scope(
        self, row: Mapping[str, Any], args: Mapping[str, Any], call: Call
    ) -> tuple[frozenset[str] | None, str | None, str | None]:
        """The triggered leads and the per-run key the call was made under, or why the row
        cannot tell (only when the new policy needs them for this call)."""
        recorded = args.get("scope")
        scope = recorded if isinstance(recorded, dict) else None
        run = row["run_id"] or (scope or {}).get("session")
        scoped = any(
            r.scope == "triggered" for r in self.policy.constraints.get(call.endpoint.name, ())
        )
        leads: frozenset[str] | None = None
        if scope is not None and isinstance(scope.get("triggered"), list):
            leads = frozenset(str(x) for x in scope["triggered"])
        elif scoped and scope is None and row["run_id"] is not None:
            return (
                None,
                None,
                "the row does not record the run's triggered leads (scope: triggered)",
            )
        if run is None and _applicable(self.policy.limits.per_run, call.endpoint.name, call.access):
            return None, None, "the row does not record which session its per-run limits count"
        return leads, run, None

    def decide(self, row: Mapping[str, Any]) -> None:
        """Re-decide one logical call (its first recorded attempt) and note any change."""
        self.report.calls += 1
        args = _args(row)
        if args is None:
            self._undecidable(row, "its arguments are not in the row")
            return
        body, params = args.get("body") or {}, args.get("params") or {}
        try:
            call = classify(
                row["method"], row["path"], body if isinstance(body, dict) else None, params
            )
        except UnknownEndpoint:
            call = None
        if call is not None:
            altered = sorted(f for f in self.guard.fields_read(call) if _altered(_field(call, f)))
            if altered:
                self._undecidable(
                    row, f"the log redacted or shortened {', '.join(altered)}", call.endpoint.name
                )
                return
            if self.guard.reads_statuses(call):
                self._undecidable(
                    row,
                    "a when rule reads status_label/status_type, and the statuses of the day "
                    "are not recorded",
                    call.endpoint.name,
                )
                return
            leads, run, missing = self._scope(row, args, call)
            if missing is not None:
                self._undecidable(row, missing, call.endpoint.name)
                return
            context = RunContext(actor=row["actor"], run_id=row["run_id"], triggered_leads=leads)
            decision = self.guard.check(call, context)
        else:
            decision, _ = self.guard.check_request(row["method"], row["path"], body, params)
            run = None
        after: Outcome = decision.outcome
        rule, reason = decision.rule, decision.reason
        ran = after == "allow" or (after == "approve" and row["decision"] == "approved")
        if ran and call is not None and self.quotas.active:
            over = self._charge(row, call, run)
            if over is not None:
                after, rule, reason = "deny", over, f"{over} reached"
        self._compare(
            row, call.endpoint.name if call else str(row["endpoint"]), after, rule, reason
        )

    def _charge(self, row: Mapping[str, Any], call: Call, run: str | None) -> str | None:
        """Charge the call's quotas at its recorded time; give back what the transport gave
        back (Close failed it, or refused a write for a missing object)."""
        self.now = _epoch(row["ts"])
        key = f"{self._tag}:{run}"
        self._runs.add(key)
        call_id = str(row["call_id"] or row["seq"])
        over = self.quotas.charge(
            call_id=call_id,
            run_id=key,
            endpoint=call.endpoint.name,
            access=call.access,
            dry_run=self.policy.mode == "dry_run",
        )
        status = row["status_code"]
        if over is None and ((status is None and row["error"]) or (status or 0) >= 500):
            self.quotas.refund(call_id)
        elif over is None and status == 404 and call.access != "read":
            self.quotas.refund_writes(call_id)
        return over

    def _compare(
        self, row: Mapping[str, Any], endpoint: str, after: Outcome, rule: str, reason: str
    ) -> None:
        before = outcome_of(row)
        was_limited = before == "deny" and _quota_rule(row["rule"])
        is_limited = after == "deny" and _quota_rule(rule)
        if is_limited and not was_limited:
            self.report.newly_limited[rule] += 1
        if was_limited and not is_limited:
            self.report.no_longer_limited[str(row["rule"])] += 1
        if before == after:
            self.report.unchanged += 1
            return
        self.report.changes.append(
            Change(
                row["seq"],
                row["ts"],
                row["actor"],
                row["run_id"],
                endpoint,
                row["method"],
                row["path"],
                before,
                after,
                row["rule"],
                rule,
                reason,
            )
        )


def _field(call: Call, name: str) -> Any:
    for source in (call.body, call.params, call.path_params):
        if name in source:
            return source[name]
    return None


def _calls(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The first recorded attempt of each logical call (decisions, the guard's own reads
    and calls refused before they were requests are not calls)."""
    seen: set[str] = set()
    for row in rows:
        if row["method"] not in HTTP_METHODS or row["rule"] in _GUARD_OWN:
            continue
        call_id = row["call_id"]
        if call_id is not None:
            if call_id in seen:
                continue
            seen.add(call_id)
        yield row


@runtime_checkable
class AuditSource(Protocol):
    """What a replay reads: ``AuditRows`` on a ``Store``, or the standard-library reader's
    ``AuditReader`` (the command line's, on a current SQLite file)."""

    def matching(
        self, *, policy: str | None = None, actor: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]: ...


def replay(
    store: Store | AuditSource,
    policy: Policy,
    *,
    actor: str | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> Replay:
    """What ``policy`` would have decided for the calls recorded under its name (or, with
    ``actor``, by that actor under any policy) from ``since`` (an ISO time as the audit log
    writes it), read from ``store``'s audit log (or any ``AuditSource``); reads only.
    ``limit``: at most that many calls, the oldest first."""
    selected = {"policy": None if actor else policy.name, "actor": actor, "since": since}
    report = Replay(policy.name, selected)
    if isinstance(store, AuditSource):
        source = store
    else:
        from closeguard.store.audit import AuditRows

        source = AuditRows(store)
    rows = source.matching(policy=selected["policy"], actor=actor, since=since)
    replayer = _Replayer(policy, report)
    try:
        for row in itertools.islice(_calls(rows), limit):
            replayer.decide(row)
    finally:
        replayer.close()
    return report
