"""Opportunities: create and update (a status change logs an activity); the rest is generic."""

from __future__ import annotations

from typing import Any

from closeguard.simulator._context import Ctx, bad_request, check_date
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    body_args,
    check_contact,
    check_custom,
    check_user,
    eq_filters,
    finish_update,
    lookup,
    output,
    refuse_null,
    require_lead,
)
from closeguard.simulator.handlers.crud import generic_delete, generic_get, generic_list
from closeguard.simulator.state import Obj


def _opp_status(ctx: Ctx, status_id: str) -> Obj:
    return ctx.state["opportunity_statuses"][status_id]


def _check_opp(
    ctx: Ctx, fields: dict[str, Any], lead_id: str | None, errors: dict[str, str]
) -> None:
    refuse_null(fields, ("status_id", "lead_id"), errors)
    status_id = fields.get("status_id")
    if status_id is not None and status_id not in ctx.state["opportunity_statuses"]:
        errors["status_id"] = "Opportunity status does not exist."
    check_user(ctx, fields, "user_id", errors)
    check_contact(ctx, fields, lead_id, errors)
    check_date(fields.get("date_won"), "date_won", errors)
    check_custom(ctx, "opportunity", fields, errors)


def _status_fields(ctx: Ctx, status_id: str, current: Obj | None) -> dict[str, Any]:
    status = _opp_status(ctx, status_id)
    out: dict[str, Any] = {
        "status_id": status_id,
        "status_label": status["label"],
        "status_type": status["type"],
        "pipeline_id": status["pipeline_id"],
        "status_display_name": status["label"],
    }
    today = ctx.now.date().isoformat()
    if status["type"] == "won":
        out["date_won"] = (current or {}).get("date_won") or today
        out["date_lost"] = None
    elif status["type"] == "lost":
        out["date_lost"] = today
        out["date_won"] = None
    else:
        out["date_won"] = None
        out["date_lost"] = None
    return out


def opportunity_create(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    require_lead(ctx, fields, errors)
    _check_opp(ctx, fields, fields.get("lead_id"), errors)
    if errors:
        raise bad_request(errors)
    org = ctx.state.organization
    status_id = fields.pop("status_id", None) or next(
        s["id"] for s in ctx.state["opportunity_statuses"].values() if s["type"] == "active"
    )
    opp: Obj = {
        "id": ctx.new_id("oppo"),
        "lead_id": fields["lead_id"],
        "contact_id": None,
        "user_id": ctx.user_id,
        "value": 0,
        "value_period": "one_time",
        "value_currency": org.get("currency", "USD"),
        "confidence": 0,
        "note": "",
        **_status_fields(ctx, status_id, None),
    }
    lead = ctx.state["leads"][fields["lead_id"]]
    opp["lead_name"] = lead.get("name")
    opp.update({k: v for k, v in fields.items() if v is not None})
    ctx.stamp_new(opp)
    ctx.state.add("opportunities", opp)
    ctx.emit("opportunity", "created", opp)
    return 200, output(ctx, dict(opp))


def opportunity_update(ctx: Ctx) -> Result:
    opp = lookup(ctx, KINDS["opportunity"], ctx.path_params["id"])
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    _check_opp(ctx, fields, opp["lead_id"], errors)
    if errors:
        raise bad_request(errors)
    old = dict(opp)
    if "status_id" in fields and fields["status_id"] != opp["status_id"]:
        fields = {**_status_fields(ctx, fields["status_id"], opp), **fields}
    status, body = finish_update(ctx, "opportunity", opp, fields)
    if opp["status_id"] != old["status_id"]:
        activity: Obj = {
            "id": ctx.new_id("acti"),
            "_type": "OpportunityStatusChange",
            "lead_id": opp["lead_id"],
            "contact_id": opp.get("contact_id"),
            "user_id": ctx.user_id,
            "opportunity_id": opp["id"],
            "old_status_id": old["status_id"],
            "old_status_label": old["status_label"],
            "old_status_type": old["status_type"],
            "new_status_id": opp["status_id"],
            "new_status_label": opp["status_label"],
            "new_status_type": opp["status_type"],
            "old_pipeline_id": old.get("pipeline_id"),
            "new_pipeline_id": opp.get("pipeline_id"),
            "opportunity_value": opp.get("value"),
            "opportunity_value_period": opp.get("value_period"),
            "opportunity_value_currency": opp.get("value_currency"),
        }
        ctx.stamp_new(activity)
        ctx.state.add("activities", activity)
        ctx.emit("activity.opportunity_status_change", "created", activity)
    return status, body


HANDLERS: dict[str, Handler] = {
    "opportunity.list": generic_list(
        "opportunity",
        eq_filters("lead_id", "status_id", "status_type", "pipeline_id", "user_id"),
    ),
    "opportunity.get": generic_get("opportunity"),
    "opportunity.create": opportunity_create,
    "opportunity.update": opportunity_update,
    "opportunity.delete": generic_delete("opportunity"),
}
