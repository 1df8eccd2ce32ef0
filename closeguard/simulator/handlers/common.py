"""What every resource module shares: lookups, rendering, paging, field checks.

A handler takes a ``Ctx`` and returns ``(status, payload)`` or raises ``ApiError``. It
validates all input before its first mutation (atomic requests), changes collections only
through ``OrgState.add``/``remove``/``reparent`` (which keep the lead indexes current), and
stages events with ``ctx.emit`` for the app to commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from closeguard.simulator._context import Ctx, bad_request, fields_filter, not_found, parse_args
from closeguard.simulator.state import CUSTOM_FIELD_COLLECTIONS, Collection, Obj, parse_iso
from closeguard.tools.models import CUSTOM_FIELD_KEY

Result = tuple[int, Any]
Handler = Callable[[Ctx], Result]
Filter = Callable[[Ctx, dict[str, Any], Obj], bool]

DEFAULT_PAGE = 100
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Kind:
    """How one resource is stored and announced."""

    collection: Collection
    prefix: str
    object_type: str | None
    cf_object: str | None = None
    activity_type: str | None = None


KINDS: dict[str, Kind] = {
    "lead": Kind("leads", "lead", "lead", "lead"),
    "contact": Kind("contacts", "cont", "contact", "contact"),
    "opportunity": Kind("opportunities", "oppo", "opportunity", "opportunity"),
    "activity.note": Kind("activities", "acti", "activity.note", "activity", "Note"),
    "activity.call": Kind("activities", "acti", "activity.call", "activity", "Call"),
    "activity.email": Kind("activities", "acti", "activity.email", "activity", "Email"),
    "task": Kind("tasks", "task", "task"),
    "webhook": Kind("webhooks", "whsub", None),
    **{
        f"custom_field.{o}": Kind(collection, "cf", None)
        for o, collection in CUSTOM_FIELD_COLLECTIONS.items()
    },
}

ACTIVITY_OBJECT_TYPES = {
    "Note": "activity.note",
    "Call": "activity.call",
    "Email": "activity.email",
    "OpportunityStatusChange": "activity.opportunity_status_change",
    "LeadStatusChange": "activity.lead_status_change",
}


def activity_object_type(activity: Obj) -> str:
    kind = str(activity.get("_type", ""))
    return ACTIVITY_OBJECT_TYPES.get(kind, f"activity.{kind.lower()}")


# -- lookups and rendering ----------------------------------------------------------------


def lookup(ctx: Ctx, kind: Kind, obj_id: str) -> Obj:
    obj = ctx.state[kind.collection].get(obj_id)
    if obj is None or (kind.activity_type and obj.get("_type") != kind.activity_type):
        raise not_found()
    return obj


def render_lead(ctx: Ctx, lead: Obj) -> Obj:
    """A lead as Close returns it: with its contacts, opportunities and tasks (indexed)."""
    state = ctx.state
    return {
        **lead,
        "contacts": [dict(c) for c in state.children("contacts", lead["id"])],
        "opportunities": [dict(o) for o in state.children("opportunities", lead["id"])],
        "tasks": [dict(t) for t in state.children("tasks", lead["id"])],
    }


def render(ctx: Ctx, resource: str, obj: Obj) -> Obj:
    if resource == "lead":
        return render_lead(ctx, obj)
    return dict(obj)


def body_args(ctx: Ctx) -> dict[str, Any]:
    model = ctx.endpoint.body_model
    if model is None:
        raise RuntimeError(f"{ctx.endpoint.name} takes no body")
    return parse_args(model, ctx.body)


def output(ctx: Ctx, obj: Obj) -> Obj:
    return fields_filter(obj, ctx.query.get("_fields"))


# -- paging --------------------------------------------------------------------------------


def page(ctx: Ctx, params: dict[str, Any], items: list[Obj], *, total: bool = False) -> Obj:
    ep = ctx.endpoint
    skip = params.get("_skip") or 0
    limit = params.get("_limit") or min(DEFAULT_PAGE, ep.max_limit or DEFAULT_PAGE)
    errors: dict[str, str] = {}
    if ep.max_limit is not None and limit > ep.max_limit:
        errors["_limit"] = f"Ensure this value is less than or equal to {ep.max_limit}."
    if ep.max_skip is not None and skip > ep.max_skip:
        errors["_skip"] = (
            f"Ensure this value is less than or equal to {ep.max_skip}; "
            "narrow the query by date instead of paging deeper."
        )
    if errors:
        raise bad_request(errors)
    chunk = items[skip : skip + limit]
    out: Obj = {"data": chunk, "has_more": skip + limit < len(items)}
    if total:
        out["total_results"] = len(items)
    return out


def list_response(
    ctx: Ctx,
    params: dict[str, Any],
    items: list[Obj],
    *,
    total: bool = False,
    render_one: Callable[[Obj], Obj] | None = None,
) -> Result:
    body = page(ctx, params, items, total=total)
    body["data"] = [output(ctx, render_one(o) if render_one else dict(o)) for o in body["data"]]
    return 200, body


# -- custom fields -------------------------------------------------------------------------


def check_custom(
    ctx: Ctx, cf_object: str | None, fields: dict[str, Any], errors: dict[str, str]
) -> None:
    """Validate ``custom.cf_…`` values against the organization's definitions."""
    collection = CUSTOM_FIELD_COLLECTIONS.get(cf_object or "")
    for key, value in fields.items():
        if not CUSTOM_FIELD_KEY.match(key):
            continue
        cf_id = key.removeprefix("custom.")
        definition = ctx.state[collection].get(cf_id) if collection else None
        if definition is None:
            errors[key] = f"Unknown custom field {cf_id}."
            continue
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not definition.get("accepts_multiple_values"):
            errors[key] = "This field does not accept multiple values."
            continue
        problem = next((p for p in (_cf_problem(ctx, definition, v) for v in values) if p), None)
        if problem:
            errors[key] = problem


def _cf_problem(ctx: Ctx, definition: Obj, value: Any) -> str | None:
    kind = definition.get("type")
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "A number is required."
    if kind in ("text", "textarea", "hidden"):
        return None if isinstance(value, str | int | float) else "A string is required."
    if kind in ("date", "datetime"):
        try:
            parse_iso(str(value))
        except ValueError:
            return "Invalid date."
        return None
    if kind == "choices":
        return None if value in (definition.get("choices") or []) else f"Invalid choice {value!r}."
    if kind == "user":
        return None if value in ctx.state["users"] else "Unknown user."
    if kind == "contact":
        return None if value in ctx.state["contacts"] else "Unknown contact."
    return None


def apply_fields(obj: Obj, fields: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Set ``fields`` on ``obj`` (a ``None`` custom value removes it); what changed.

    Never used for ``lead_id`` (no update body carries it; a move is ``state.reparent``).
    """
    changed: list[str] = []
    previous: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None and CUSTOM_FIELD_KEY.match(key):
            if key in obj:
                previous[key] = obj.pop(key)
                changed.append(key)
            continue
        if key in obj and obj[key] == value:
            continue
        previous[key] = obj.get(key)
        obj[key] = value
        changed.append(key)
    return changed, previous


def touch(ctx: Ctx, obj: Obj) -> None:
    obj["date_updated"] = ctx.now_iso
    obj["updated_by"] = ctx.user_id


def finish_update(ctx: Ctx, object_type: str, obj: Obj, fields: dict[str, Any]) -> Result:
    """Apply an update, stamp it and log ``<object_type>.updated`` if anything changed."""
    changed, previous = apply_fields(obj, fields)
    if changed:
        touch(ctx, obj)
        ctx.emit(object_type, "updated", obj, changed_fields=changed, previous_data=previous)
    return 200, output(ctx, dict(obj))


# -- reference checks ----------------------------------------------------------------------


def require_lead(ctx: Ctx, fields: dict[str, Any], errors: dict[str, str]) -> None:
    if "lead_id" in fields and fields["lead_id"] not in ctx.state["leads"]:
        errors["lead_id"] = "Lead does not exist."


def check_user(ctx: Ctx, fields: dict[str, Any], key: str, errors: dict[str, str]) -> None:
    if fields.get(key) is not None and fields[key] not in ctx.state["users"]:
        errors[key] = "User does not exist."


def check_contact(
    ctx: Ctx, fields: dict[str, Any], lead_id: str | None, errors: dict[str, str]
) -> None:
    contact_id = fields.get("contact_id")
    if contact_id is None:
        return
    contact = ctx.state["contacts"].get(contact_id)
    if contact is None:
        errors["contact_id"] = "Contact does not exist."
    elif lead_id is not None and contact.get("lead_id") != lead_id:
        errors["contact_id"] = "Contact belongs to another lead."


def refuse_null(fields: dict[str, Any], keys: Iterable[str], errors: dict[str, str]) -> None:
    for key in keys:
        if key in fields and fields[key] is None:
            errors[key] = "This field may not be null."


def eq_filters(*keys: str) -> Filter:
    def test(_ctx: Ctx, params: dict[str, Any], obj: Obj) -> bool:
        return all(obj.get(k) == params[k] for k in keys if params.get(k) is not None)

    return test
