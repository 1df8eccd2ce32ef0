"""The packaged sales-ops workflows, one a file, each with its shipped policy of the same name.

``WORKFLOWS`` lists them in the order ``closeguard workflows list`` shows them;
``closeguard.workflows.packaged_workflows()`` gives them by name.
"""

from closeguard.workflows.definition import Workflow
from closeguard.workflows.library import (
    call_summary,
    duplicate_lead_merge,
    follow_up_on_status_change,
    new_lead_triage,
    overdue_task_digest,
    rep_offboarding,
    stale_opportunity_nudge,
    won_deal_handoff,
)

WORKFLOWS: tuple[Workflow, ...] = (
    follow_up_on_status_change.WORKFLOW,
    new_lead_triage.WORKFLOW,
    stale_opportunity_nudge.WORKFLOW,
    overdue_task_digest.WORKFLOW,
    won_deal_handoff.WORKFLOW,
    call_summary.WORKFLOW,
    duplicate_lead_merge.WORKFLOW,
    rep_offboarding.WORKFLOW,
)

__all__ = ["WORKFLOWS"]
