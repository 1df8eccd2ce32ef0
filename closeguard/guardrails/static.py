"""The static decision table: what a policy decides per endpoint and access level.

Before any argument is looked at, a call of one endpoint at one access level is allowed,
denied or sent for approval by the policy's ``deny`` entries, ``grants``, zero limits and
``approve`` entries, in that order. Entries with a ``when`` condition depend on the
arguments, so the table leaves them out: ``Guard`` checks them per call. The loader uses
the table to refuse constraints that can never apply; ``Guard`` precomputes it so a call
costs a lookup.

This module reads a policy through the ``Rules`` protocol (``Policy`` satisfies it) and
imports nothing else of the guard, so ``policy`` and ``decision`` both build on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from closeguard.tools.access import Access
from closeguard.tools.catalog import (
    ACCESS_RANK,
    ENDPOINTS,
    Endpoint,
    access_allows,
    resource_ancestors,
)

__all__ = [
    "Decision",
    "EntryRule",
    "Outcome",
    "Rules",
    "entry_matches",
    "possible_access",
    "static_decisions",
]

Outcome = Literal["allow", "deny", "approve"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guard decided for one call, and which rule decided it."""

    outcome: Outcome
    rule: str
    reason: str
    endpoint: str | None = None
    access: Access | None = None
    approvers: tuple[str, ...] = ()
    """For ``approve``: the roles that may answer the request."""

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def denied(self) -> bool:
        return self.outcome == "deny"

    @property
    def needs_approval(self) -> bool:
        return self.outcome == "approve"

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "rule": self.rule,
            "reason": self.reason,
            "endpoint": self.endpoint,
            "access": self.access,
            "approvers": list(self.approvers),
        }


class CounterRules(Protocol):
    """One set of limits (``Counters``)."""

    @property
    def calls(self) -> int | None: ...
    @property
    def writes(self) -> int | None: ...
    @property
    def destructive(self) -> int | None: ...
    @property
    def per_endpoint(self) -> Mapping[str, int]: ...


class LimitRules(Protocol):
    """A policy's limits (``Limits``)."""

    @property
    def per_run(self) -> CounterRules: ...
    @property
    def per_window(self) -> CounterRules: ...


class EntryRule(Protocol):
    """One deny or approve entry (``policy.Entry``)."""

    @property
    def match(self) -> str: ...
    @property
    def when(self) -> object | None: ...
    @property
    def approvers(self) -> tuple[str, ...]: ...
    @property
    def label(self) -> str: ...


class Rules(Protocol):
    """What the table reads of a policy."""

    @property
    def grants(self) -> Mapping[str, Access]: ...
    @property
    def deny_rules(self) -> Sequence[EntryRule]: ...
    @property
    def approve_rules(self) -> Sequence[EntryRule]: ...
    @property
    def limits(self) -> LimitRules: ...


def possible_access(ep: Endpoint) -> tuple[Access, ...]:
    """The access levels a call of ``ep`` can classify as (escalation included)."""
    if ep.escalate is None:
        return (ep.access,)
    return tuple(
        a
        for a in cast(tuple[Access, ...], tuple(ACCESS_RANK))
        if ACCESS_RANK[a] >= ACCESS_RANK[ep.access]
    )


def static_decisions(rules: Rules) -> dict[tuple[str, Access], Decision]:
    """The argument-independent decision for every endpoint at every reachable level."""
    return {
        (ep.name, access): _static(rules, ep, access)
        for ep in ENDPOINTS
        for access in possible_access(ep)
    }


def entry_matches(entry: str, ep: Endpoint, access: Access) -> bool:
    """Whether a deny/approve entry (endpoint, resource or level) covers ``ep`` at ``access``."""
    if entry in ("*", ep.name) or entry in resource_ancestors(ep.resource):
        return True
    return entry in ACCESS_RANK and ACCESS_RANK[access] >= ACCESS_RANK[entry]


def _static(rules: Rules, ep: Endpoint, access: Access) -> Decision:
    for entry in rules.deny_rules:
        if entry.when is None and entry_matches(entry.match, ep, access):
            return Decision(
                "deny", entry.label, f"{ep.name} is denied by {entry.match!r}", ep.name, access
            )
    level: Access | None = None
    granted_on = ""
    for res in (*resource_ancestors(ep.resource), "*"):
        if res in rules.grants:
            level, granted_on = rules.grants[res], res
            break
    if level is None:
        return Decision(
            "deny", "grants", f"no grant covers resource {ep.resource!r}", ep.name, access
        )
    if not access_allows(level, access):
        return Decision(
            "deny",
            f"grants.{granted_on}",
            f"grant on {granted_on!r} is {level}; {ep.name} here needs {access}",
            ep.name,
            access,
        )
    zero = _zero_limit(rules, ep, access)
    if zero is not None:
        return Decision("deny", zero, f"{zero} is 0", ep.name, access)
    for entry in rules.approve_rules:
        if entry.when is None and entry_matches(entry.match, ep, access):
            return Decision(
                "approve",
                entry.label,
                f"{ep.name} ({access}) needs approval by {entry.match!r}",
                ep.name,
                access,
                entry.approvers,
            )
    return Decision(
        "allow", f"grants.{granted_on}", f"granted {level} on {granted_on!r}", ep.name, access
    )


def _zero_limit(rules: Rules, ep: Endpoint, access: Access) -> str | None:
    for scope, counters in (
        ("per_run", rules.limits.per_run),
        ("per_window", rules.limits.per_window),
    ):
        checks = (
            ("calls", counters.calls, True),
            ("writes", counters.writes, access != "read"),
            ("destructive", counters.destructive, access == "destructive"),
        )
        for key, limit, applies in checks:
            if applies and limit == 0:
                return f"limits.{scope}.{key}"
        if counters.per_endpoint.get(ep.name) == 0:
            return f"limits.{scope}.per_endpoint.{ep.name}"
    return None
