"""Tasks: create, update (completing logs ``task.completed``), bulk update, filters."""

from __future__ import annotations

from typing import Any

from closeguard.simulator._context import Ctx, bad_request, check_date, parse_query
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    body_args,
    check_user,
    eq_filters,
    finish_update,
    lookup,
    output,
    refuse_null,
    require_lead,
)
from closeguard.simulator.handlers.crud import generic_delete, generic_get, generic_list
from closeguard.simulator.state import Obj, parse_iso


def task_filter(ctx: Ctx, params: dict[str, Any], obj: Obj) -> bool:
    if not eq_filters("lead_id", "assigned_to", "is_complete")(ctx, params, obj):
        return False
    if params.get("id__in") and obj["id"] not in str(params["id__in"]).split(","):
        return False
    for key, later in (("date__gt", True), ("date__lt", False)):
        if params.get(key):
            if not obj.get("date"):
                return False
            try:
                bound, due = parse_iso(params[key]), parse_iso(obj["date"])
            except ValueError:
                raise bad_request({key: "Invalid date."}) from None
            if (due <= bound) if later else (due >= bound):
                return False
    return True


def _check_task(ctx: Ctx, fields: dict[str, Any], errors: dict[str, str]) -> None:
    check_user(ctx, fields, "assigned_to", errors)
    check_date(fields.get("date"), "date", errors)
    refuse_null(fields, ("is_complete",), errors)


def task_create(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    require_lead(ctx, fields, errors)
    _check_task(ctx, fields, errors)
    if errors:
        raise bad_request(errors)
    lead = ctx.state["leads"][fields["lead_id"]]
    task: Obj = {
        "id": ctx.new_id("task"),
        "_type": "lead",
        "lead_id": lead["id"],
        "lead_name": lead.get("name"),
        "assigned_to": ctx.user_id,
        "text": "",
        "date": None,
        "is_complete": False,
    }
    task.update({k: v for k, v in fields.items() if v is not None})
    ctx.stamp_new(task)
    ctx.state.add("tasks", task)
    ctx.emit("task", "created", task)
    return 200, output(ctx, dict(task))


def _apply_task_update(ctx: Ctx, task: Obj, fields: dict[str, Any]) -> None:
    was_complete = bool(task.get("is_complete"))
    finish_update(ctx, "task", task, fields)
    if task.get("is_complete") and not was_complete:
        ctx.emit(
            "task",
            "completed",
            task,
            changed_fields=["is_complete"],
            previous_data={"is_complete": False},
        )


def task_update(ctx: Ctx) -> Result:
    task = lookup(ctx, KINDS["task"], ctx.path_params["id"])
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    _check_task(ctx, fields, errors)
    if errors:
        raise bad_request(errors)
    _apply_task_update(ctx, task, fields)
    return 200, output(ctx, dict(task))


def task_bulk_update(ctx: Ctx) -> Result:
    """Close's bulk edit; a filter is required here so an empty query never hits every task."""
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    if not any(v is not None for v in params.values()):
        raise bad_request(None, "A bulk update needs at least one filter (id__in, lead_id…).")
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    _check_task(ctx, fields, errors)
    if not fields:
        errors["__all__"] = "Nothing to update."
    if errors:
        raise bad_request(errors)
    matches = [t for t in ctx.state["tasks"].values() if task_filter(ctx, params, t)]
    for task in matches:
        _apply_task_update(ctx, task, dict(fields))
    return 200, {"data": [output(ctx, dict(t)) for t in matches], "has_more": False}


HANDLERS: dict[str, Handler] = {
    "task.list": generic_list("task", task_filter),
    "task.get": generic_get("task"),
    "task.create": task_create,
    "task.update": task_update,
    "task.delete": generic_delete("task"),
    "task.bulk_update": task_bulk_update,
}
