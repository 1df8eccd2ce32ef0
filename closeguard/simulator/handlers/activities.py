"""Activities: the cross-type list, and notes, calls and emails (``outbox`` sends)."""

from __future__ import annotations

from typing import Any

from closeguard.simulator._context import Ctx, bad_request, check_emails
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    body_args,
    check_contact,
    check_custom,
    eq_filters,
    finish_update,
    lookup,
    output,
    require_lead,
)
from closeguard.simulator.handlers.crud import generic_delete, generic_get, generic_list
from closeguard.simulator.state import Obj, parse_iso


def activity_filter(ctx: Ctx, params: dict[str, Any], obj: Obj) -> bool:
    if not eq_filters("lead_id", "contact_id", "user_id", "_type")(ctx, params, obj):
        return False
    for key, newer in (("date_created__gt", True), ("date_created__lt", False)):
        if params.get(key):
            try:
                bound = parse_iso(params[key])
            except ValueError:
                raise bad_request({key: "Invalid datetime."}) from None
            created = parse_iso(obj["date_created"])
            if (created <= bound) if newer else (created >= bound):
                return False
    return True


def activity_create(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        fields = body_args(ctx)
        errors: dict[str, str] = {}
        require_lead(ctx, fields, errors)
        check_contact(ctx, fields, fields.get("lead_id"), errors)
        for key in ("to", "cc", "bcc"):
            check_emails(fields.get(key), key, errors)
        check_custom(ctx, "activity", fields, errors)
        if errors:
            raise bad_request(errors)
        activity: Obj = {
            "id": ctx.new_id("acti"),
            "_type": kind.activity_type,
            "contact_id": None,
            "user_id": ctx.user_id,
            **_activity_defaults(ctx, str(kind.activity_type)),
        }
        activity.update({k: v for k, v in fields.items() if v is not None})
        ctx.stamp_new(activity)
        sending = activity.get("status") in ("outbox", "sent") and resource == "activity.email"
        if sending and activity["status"] == "outbox":
            activity["status"] = "sent"
            activity["date_sent"] = ctx.now_iso
        ctx.state.add("activities", activity)
        ctx.emit(str(kind.object_type), "created", activity)
        if sending and fields.get("status") == "outbox":
            ctx.emit(str(kind.object_type), "sent", activity)
        return 200, output(ctx, dict(activity))

    return handler


def _activity_defaults(ctx: Ctx, activity_type: str) -> dict[str, Any]:
    if activity_type == "Note":
        return {"note": "", "note_html": ""}
    if activity_type == "Call":
        return {
            "direction": "outbound",
            "duration": 0,
            "status": "completed",
            "note": "",
            "phone": None,
        }
    user = ctx.state["users"].get(ctx.user_id, {})
    return {
        "direction": "outgoing",
        "status": "draft",
        "sender": user.get("email"),
        "to": [],
        "cc": [],
        "bcc": [],
        "subject": "",
        "body_text": "",
        "body_html": "",
        "date_sent": None,
    }


def activity_update(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        activity = lookup(ctx, kind, ctx.path_params["id"])
        fields = body_args(ctx)
        errors: dict[str, str] = {}
        check_contact(ctx, fields, activity["lead_id"], errors)
        for key in ("to", "cc", "bcc"):
            check_emails(fields.get(key), key, errors)
        check_custom(ctx, "activity", fields, errors)
        if activity.get("status") == "sent" and fields.get("status", "sent") != "sent":
            errors["status"] = "A sent email cannot change status."
        if errors:
            raise bad_request(errors)
        sending = resource == "activity.email" and fields.get("status") == "outbox"
        if sending:
            fields = {**fields, "status": "sent", "date_sent": ctx.now_iso}
        result = finish_update(ctx, str(kind.object_type), activity, fields)
        if sending:
            ctx.emit(str(kind.object_type), "sent", activity)
        return result

    return handler


HANDLERS: dict[str, Handler] = {"activity.list": generic_list("activity", activity_filter)}
for _kind in ("note", "call", "email"):
    _res = f"activity.{_kind}"
    HANDLERS[f"{_res}.list"] = generic_list(_res, activity_filter)
    HANDLERS[f"{_res}.get"] = generic_get(_res)
    HANDLERS[f"{_res}.create"] = activity_create(_res)
    HANDLERS[f"{_res}.update"] = activity_update(_res)
    HANDLERS[f"{_res}.delete"] = generic_delete(_res)
