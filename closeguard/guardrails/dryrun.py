"""Fake responses for dry runs: what Close would plausibly answer, built from the catalog.

A create echoes the fields sent with a fresh id of the resource's prefix (``lead_…``), an
update echoes them on the path's id, a delete answers ``{}``; the result is passed through
the endpoint's result model so its shape is the real one.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from closeguard.tools.catalog import Call

__all__ = ["DRY_RUN_HEADER", "fake_result"]

DRY_RUN_HEADER = "x-closeguard-dry-run"
ID_PREFIX = {
    "lead": "lead",
    "contact": "cont",
    "opportunity": "oppo",
    "activity": "acti",
    "task": "task",
    "custom_field": "cf",
    "webhook": "whsub",
    "organization": "orga",
    "user": "user",
    "status": "stat",
    "pipeline": "pipe",
    "event": "ev",
}
ACTIVITY_TYPE = {"note": "Note", "call": "Call", "email": "Email"}


def fake_id(resource: str) -> str:
    return f"{ID_PREFIX.get(resource.split('.')[0], 'obj')}_dryrun{secrets.token_hex(8)}"


def fake_result(call: Call) -> dict[str, Any]:
    """A realistic JSON body for a write that was not sent."""
    ep = call.endpoint
    now = datetime.now(UTC).isoformat()
    body: Mapping[str, Any] = call.body
    data: dict[str, Any]
    if ep.method == "DELETE":
        data = {}
    elif ep.name == "lead.merge":
        data = {"id": body.get("destination") or fake_id("lead"), "date_updated": now}
    elif ep.name == "task.bulk_update":
        data = {"data": [], "has_more": False, "total_results": 0}
    elif "id" in call.path_params:
        data = {**body, "id": call.path_params["id"], "date_updated": now}
    else:
        data = {**body, "id": fake_id(ep.resource), "date_created": now, "date_updated": now}
    if ep.name == "lead.create" and isinstance(data.get("contacts"), list):
        data["contacts"] = [
            {**c, "id": fake_id("contact"), "lead_id": data["id"]} if isinstance(c, dict) else c
            for c in data["contacts"]
        ]
    kind = ep.resource.split(".")
    if kind[0] == "activity" and len(kind) > 1 and data:
        data.setdefault("_type", ACTIVITY_TYPE.get(kind[1], kind[1].title()))
    if ep.resource == "webhook" and ep.name.endswith(".create"):
        data.setdefault("signature_key", secrets.token_hex(32))
    try:
        model = ep.result_model.model_validate(data)
    except ValidationError:
        return data
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
