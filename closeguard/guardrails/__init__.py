"""The guard between every agent or workflow and Close.

Owns policy files, call classification into decisions (allow, deny, needs approval),
quotas, approvals and the hash-chained audit log, and ``GuardTransport``, the httpx
transport wrapper that enforces them. Depends on ``tools`` (catalog) and ``store``.

::

    policy = Policy.load("sales-rep")                  # or a path to a YAML file
    client = CloseClient(..., policy=Guarded(policy), actor="rep-bot")
    # or, with a store and the leads a workflow run was triggered for:
    client = CloseClient(..., policy=Guarded(policy, store=s, triggered_leads={lead_id}),
                         actor="followup", run_id=run.id)

Modules, lowest first (imports point down only): ``static`` (the decision table),
``policy`` (data and loading), ``decision`` (``Guard``), ``quotas``, ``approvals``,
``audit``, ``transport`` (``GuardTransport`` and ``Guarded``); ``accounts`` (the people who
answer approvals) stands apart, sharing only ``roles`` (what a role may be called). Exports
load on first use (module ``__getattr__``), so a command that needs one module does not
import the transport, httpx or the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Eager: the export shares its name with its module, which would shadow a lazy export once
# the module is imported (the import system sets the package's attribute to the module).
from closeguard.guardrails.redact import redact
from closeguard.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from closeguard.guardrails.accounts import Account, Accounts
    from closeguard.guardrails.approvals import (
        DEFAULT_TTL,
        Approval,
        ApprovalError,
        Approvals,
        call_hash,
        on_request,
    )
    from closeguard.guardrails.audit import AuditLog, AuditProblem, VerifyReport, row_hash
    from closeguard.guardrails.decision import Guard, RunContext
    from closeguard.guardrails.dryrun import DRY_RUN_HEADER, fake_result
    from closeguard.guardrails.policy import (
        Counters,
        FieldRule,
        Limits,
        Policy,
        shipped_policies,
    )
    from closeguard.guardrails.quotas import Quotas
    from closeguard.guardrails.static import Decision
    from closeguard.guardrails.transport import Guarded, GuardTransport

_LAZY = {
    "Account": "accounts",
    "Accounts": "accounts",
    "DEFAULT_TTL": "approvals",
    "Approval": "approvals",
    "ApprovalError": "approvals",
    "Approvals": "approvals",
    "call_hash": "approvals",
    "on_request": "approvals",
    "AuditLog": "audit",
    "AuditProblem": "audit",
    "VerifyReport": "audit",
    "row_hash": "audit",
    "Guard": "decision",
    "RunContext": "decision",
    "DRY_RUN_HEADER": "dryrun",
    "fake_result": "dryrun",
    "Counters": "policy",
    "FieldRule": "policy",
    "Limits": "policy",
    "Policy": "policy",
    "shipped_policies": "policy",
    "Quotas": "quotas",
    "Decision": "static",
    "Guarded": "transport",
    "GuardTransport": "transport",
}
"""Export -> the module of this package that defines it, imported on first access."""


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_TTL",
    "DRY_RUN_HEADER",
    "Account",
    "Accounts",
    "Approval",
    "ApprovalError",
    "Approvals",
    "AuditLog",
    "AuditProblem",
    "Counters",
    "Decision",
    "FieldRule",
    "Guard",
    "GuardTransport",
    "Guarded",
    "Limits",
    "Policy",
    "Quotas",
    "RunContext",
    "VerifyReport",
    "call_hash",
    "fake_result",
    "on_request",
    "redact",
    "row_hash",
    "shipped_policies",
]
