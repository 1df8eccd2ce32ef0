"""Read-only MCP resources: the organization's statuses and pipelines, the policy in force.

Statuses and pipelines are read through the same guarded client as the tools (audited, and
refused if the policy does not let the actor read them). The policy is described from the
loaded ``Policy``, which holds no credential.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import mcp_types as types

from closeguard.guardrails import Policy
from closeguard.tools import CloseClient

__all__ = ["RESOURCES", "policy_summary", "read_resource"]

STATUSES = "closeguard://close/statuses"
PIPELINES = "closeguard://close/pipelines"
POLICY = "closeguard://policy"

RESOURCES: dict[str, types.Resource] = {
    r.uri: r
    for r in (
        types.Resource(
            uri=STATUSES,
            name="statuses",
            title="Lead and opportunity statuses",
            description="The organization's lead statuses and opportunity statuses (ids, labels).",
            mime_type="application/json",
        ),
        types.Resource(
            uri=PIPELINES,
            name="pipelines",
            title="Opportunity pipelines",
            description="The organization's pipelines and the statuses in each.",
            mime_type="application/json",
        ),
        types.Resource(
            uri=POLICY,
            name="policy",
            title="The closeguard policy in force",
            description="Grants, denials, approvals, argument constraints and limits.",
            mime_type="application/json",
        ),
    )
}


def policy_summary(policy: Policy) -> dict[str, Any]:
    """The policy as data: what it grants, denies, asks approval for, constrains, limits."""
    return {
        "name": policy.name,
        "description": policy.description,
        "mode": policy.mode,
        "grants": dict(policy.grants),
        "deny": [e.describe() for e in policy.deny_rules],
        "approve": [e.describe() for e in policy.approve_rules],
        "approvers": {e.describe(): list(e.approvers) for e in policy.approve_rules},
        "constraints": {
            endpoint: [rule.describe() for rule in rules]
            for endpoint, rules in policy.constraints.items()
        },
        "limits": asdict(policy.limits),
    }


async def read_resource(uri: str, policy: Policy, client: CloseClient) -> Any:
    """The data behind ``uri``; ``KeyError`` for an unknown one."""
    if uri == POLICY:
        return policy_summary(policy)
    if uri == STATUSES:
        lead = await client.call("status.lead.list")
        opportunity = await client.call("status.opportunity.list")
        return {"lead": lead.get("data", lead), "opportunity": opportunity.get("data", opportunity)}
    if uri == PIPELINES:
        pipelines = await client.call("pipeline.list")
        return pipelines.get("data", pipelines)
    raise KeyError(uri)
