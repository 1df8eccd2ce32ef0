"""``closeguard policy``: validate a policy file, explain what it allows, and try it on the
calls the audit log recorded (``replay``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import (
    JsonOpt,
    existing_store,
    fail,
    print_json,
    shown,
    store_reader,
)

if TYPE_CHECKING:
    from closeguard.guardrails import Policy
    from closeguard.guardrails.replay import Replay
    from closeguard.tools.access import Access
    from closeguard.tools.catalog import Endpoint

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["policy"].help, no_args_is_help=True)

OUTCOME_STYLE = {"allow": "green", "approve": "yellow", "deny": "red"}
PolicyArg = Annotated[
    str, typer.Argument(metavar="POLICY", help="A policy YAML file or a shipped policy name.")
]


def _load(source: str) -> Policy:
    """Load a policy; warn on stderr when it grants nothing (it then denies every call)."""
    from closeguard.guardrails.policy import Policy

    policy = Policy.load(source)
    if not policy.grants:
        typer.echo(
            typer.style("warning:", fg="yellow", bold=True)
            + f" policy {policy.name!r} grants nothing, so it denies every call",
            err=True,
        )
    return policy


@app.command("check")
def check(source: PolicyArg) -> None:
    """Validate a policy: exit 0 if it loads, else print the line-numbered error, exit 1."""
    policy = _load(source)
    chain = f" (extends {', '.join(policy.extends)})" if policy.extends else ""
    typer.echo(f"ok: policy {policy.name!r}, mode {policy.mode}{chain}")


@app.command("list")
def list_shipped(as_json: JsonOpt = False) -> None:
    """The policies shipped with closeguard (use a name wherever a policy file goes)."""
    from closeguard.cli._table import Table
    from closeguard.guardrails._shipped import shipped_policies

    shipped = shipped_policies()
    if as_json:
        print_json([{"name": name, "description": desc} for name, desc in shipped.items()])
        return
    table = Table(title="Shipped policies")
    table.add_column("name", wrap=False)
    table.add_column("description")
    for name, desc in shipped.items():
        table.add_row(name, desc)
    table.print()


def _conditional(policy: Policy, ep: Endpoint, access: Access) -> list[str]:
    """The ``when`` entries covering the endpoint at this level, as written, with roles."""
    from closeguard.guardrails.conditions import describe
    from closeguard.guardrails.static import entry_matches

    out = []
    for entry in (*policy.deny_rules, *policy.approve_rules):
        if entry.when is not None and entry_matches(entry.match, ep, access):
            roles = f" (approvers: {', '.join(entry.approvers)})" if entry.kind == "approve" else ""
            out.append(f"{entry.kind} when {describe(entry.when)}{roles} [{entry.label}]")
    return out


def explain_rows(policy: Policy) -> list[dict[str, Any]]:
    """One row per endpoint and reachable access level: outcome (without ``when`` entries),
    rule, reason, approvers, the ``when`` entries that may change it, constraints."""
    from closeguard.guardrails.decision import Guard
    from closeguard.guardrails.static import possible_access
    from closeguard.tools.catalog import ENDPOINTS

    guard = Guard(policy)
    rows = []
    for ep in ENDPOINTS:
        for access in possible_access(ep):
            d = guard.static(ep.name, access)
            rows.append(
                {
                    "endpoint": ep.name,
                    "method": ep.method,
                    "path": ep.path,
                    "access": access,
                    "escalated": access != ep.access,
                    "outcome": d.outcome,
                    "rule": d.rule,
                    "reason": d.reason,
                    "approvers": list(d.approvers),
                    "when": [] if d.outcome == "deny" else _conditional(policy, ep, access),
                    "constraints": [r.describe() for r in policy.constraints.get(ep.name, ())],
                    "limits": _limits_for(policy, ep.name, access),
                }
            )
    return rows


def _limits_for(policy: Policy, endpoint: str, access: str) -> list[str]:
    out = []
    for scope, c in (("per_run", policy.limits.per_run), ("per_window", policy.limits.per_window)):
        suffix = f" per {policy.limits.window_seconds}s" if scope == "per_window" else " per run"
        if c.calls is not None:
            out.append(f"calls <= {c.calls}{suffix}")
        if c.writes is not None and access != "read":
            out.append(f"writes <= {c.writes}{suffix}")
        if c.destructive is not None and access == "destructive":
            out.append(f"destructive <= {c.destructive}{suffix}")
        if endpoint in c.per_endpoint:
            out.append(f"{endpoint} <= {c.per_endpoint[endpoint]}{suffix}")
    return out


@app.command("explain")
def explain(source: PolicyArg, as_json: JsonOpt = False) -> None:
    """For every catalog endpoint: allowed, denied (and why) or needs approval."""
    from closeguard.cli._table import Table, styled

    policy = _load(source)
    rows = explain_rows(policy)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"Policy {policy.name} ({policy.mode})")
    for col in ("endpoint", "access", "decision", "rule", "why / constraints"):
        table.add_column(col, wrap=col not in ("endpoint", "rule"))
    for r in rows:
        style = OUTCOME_STYLE[r["outcome"]]
        access = r["access"] + (" (by args)" if r["escalated"] else "")
        roles = [f"approvers: {', '.join(r['approvers'])}"] if r["outcome"] == "approve" else []
        notes = (
            r["reason"]
            if r["outcome"] == "deny"
            else "; ".join(roles + r["when"] + r["constraints"] + r["limits"]) or r["reason"]
        )
        table.add_row(
            r["endpoint"], access, styled(r["outcome"], style), shown(r["rule"]), shown(notes)
        )
    table.print()


_SINCE_HELP = (
    "Only calls from DATE on: an ISO date or time (2026-01-31, 2026-01-31T09:00, UTC unless "
    "it says otherwise) or an age (7d, 12h, 30m, 2w)."
)
_AGE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_ts(value: str, now: float | None = None) -> str:
    """``value`` (an ISO date/time or an age like ``7d``) as the audit log writes ``ts``."""
    import time
    from datetime import UTC, datetime

    text = value.strip()
    unit = _AGE_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        when = datetime.fromtimestamp((now or time.time()) - int(text[:-1]) * unit, UTC)
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise fail(
                f"--since {value!r} is neither an ISO date or time (2026-01-31) nor an age "
                "(7d, 12h)",
                2,
            ) from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.isoformat(timespec="microseconds")


_ARROW = {"allow": "green", "approve": "yellow", "deny": "red"}


@app.command("replay")
def replay_cmd(
    source: Annotated[
        str,
        typer.Argument(metavar="NEW", help="The new policy: a YAML file or a shipped policy name."),
    ],
    since: Annotated[str | None, typer.Option("--since", metavar="DATE", help=_SINCE_HELP)] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            metavar="NAME",
            help="Replay the calls NAME made, under whatever policy, instead of the calls "
            "recorded under NEW's policy name.",
        ),
    ] = None,
    examples: Annotated[
        int, typer.Option("--examples", min=1, metavar="N", help="Example calls per change.")
    ] = 3,
    as_json: JsonOpt = False,
) -> None:
    """What NEW would have done to the calls in the audit log: newly denied, newly allowed,
    newly asking approval, quota outcomes, by endpoint. Reads only: no call, no row written.

    Calls recorded under the policy of NEW's name (or by --actor) are re-decided one by one
    with the guard's own code, quotas replayed in order; a call the audit row cannot
    re-decide (a when rule on status_label/status_type, a redacted argument) is counted as
    undecidable, not guessed."""
    from closeguard.guardrails.policy import Policy
    from closeguard.guardrails.replay import replay

    policy = Policy.load(source)
    after = since_ts(since) if since is not None else None
    reader = store_reader()
    if reader is None:
        report = replay(existing_store(), policy, actor=actor, since=after)
    else:
        with reader:
            report = replay(reader.audit, policy, actor=actor, since=after)
    if as_json:
        print_json(report.as_json(examples))
        return
    _print_replay(report, source, examples)


def _print_replay(report: Replay, source: str, examples: int) -> None:
    """The replay as sentences and two tables (changes by endpoint, undecidable calls)."""
    from closeguard.cli._table import Table, styled

    chosen = report.selected
    what = f"by {chosen['actor']}" if chosen["actor"] else f"under policy {report.policy!r}"
    since = f" since {chosen['since']}" if chosen["since"] else ""
    typer.echo(
        f"Replayed {report.calls} calls recorded {what}{since} with the new policy {source}."
    )
    if not report.calls:
        return
    s = report.summary()
    typer.echo(
        f"newly denied {s['newly_denied']}, newly allowed {s['newly_allowed']}, "
        f"newly asking approval {s['newly_approval']}, undecidable {s['undecidable']}, "
        f"unchanged {s['unchanged']}"
    )
    quota = s["quota"]
    rules = {**quota["newly_limited_by_rule"], **quota["no_longer_limited_by_rule"]}
    named = f" ({', '.join(sorted(rules))})" if rules else ""
    typer.echo(
        f"quotas: {quota['newly_limited']} newly refused by a limit, "
        f"{quota['no_longer_limited']} no longer refused{named}"
    )
    groups = report.by_endpoint(examples)
    if groups:
        table = Table(title="What would change, by endpoint")
        for col in ("endpoint", "before -> after", "calls", "rule now", "why", "examples (seq)"):
            table.add_column(col, wrap=col not in ("endpoint", "before -> after"))
        for g in groups:
            arrow = styled(f"{g['before']} -> {g['after']}", _ARROW[g["after"]])
            seqs = ", ".join(f"#{n}" for n in g["examples"])
            rules_now = ", ".join(g["rules_after"])
            table.add_row(g["endpoint"], arrow, str(g["calls"]), rules_now, g["reason"], seqs)
        table.print()
    if report.undecidable:
        table = Table(title="Undecidable: the audit row lacks what the decision needs")
        for col in ("seq", "endpoint", "why"):
            table.add_column(col)
        for u in report.undecidable[: examples * 5]:
            table.add_row(f"#{u.seq}", shown(u.endpoint), u.why)
        table.print()
