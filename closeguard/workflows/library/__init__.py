"""The packaged sales-ops workflows: Python modules here, one a file, each with its shipped
policy of the same name, and rules in ``rules/`` (one YAML file each, their policy derived
from their steps; ``closeguard.workflows.rules``).

``WORKFLOWS`` lists the Python ones; ``closeguard.workflows.packaged_workflows()`` gives all
of them by name, in the order ``closeguard workflows list`` shows them.
"""

from closeguard.workflows.definition import Workflow
from closeguard.workflows.library import (
    call_summary,
    duplicate_lead_merge,
    new_lead_triage,
    overdue_task_digest,
    rep_offboarding,
)

WORKFLOWS: tuple[Workflow, ...] = (
    new_lead_triage.WORKFLOW,
    overdue_task_digest.WORKFLOW,
    call_summary.WORKFLOW,
    duplicate_lead_merge.WORKFLOW,
    rep_offboarding.WORKFLOW,
)

__all__ = ["WORKFLOWS"]
