"""One handler per catalog endpoint name; ``HANDLERS`` maps every one of the 74.

Each handler takes a ``Ctx`` and returns ``(status, payload)`` or raises ``ApiError``. All
input is validated before the first mutation (atomic requests); events are staged on the
context with ``ctx.emit`` and committed by the app.
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from closeguard.simulator._context import (
    ApiError,
    Ctx,
    bad_request,
    check_date,
    check_emails,
    fields_filter,
    not_found,
    parse_args,
    parse_query,
)
from closeguard.simulator.events import DEFAULT_LIMIT, CursorError
from closeguard.simulator.events import MAX_LIMIT as EVENT_MAX_LIMIT
from closeguard.simulator.state import Obj, parse_iso
from closeguard.tools.catalog import ENDPOINTS
from closeguard.tools.models import CUSTOM_FIELD_KEY

Result = tuple[int, Any]
Handler = Callable[[Ctx], Result]

DEFAULT_PAGE = 100
MAX_WEBHOOKS = 40
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Kind:
    """How one resource is stored and announced."""

    collection: str
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
        f"custom_field.{o}": Kind(f"custom_fields.{o}", "cf", None)
        for o in ("lead", "contact", "opportunity", "activity")
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


def by_lead(ctx: Ctx, collection: str) -> dict[str, list[Obj]]:
    """``collection`` grouped by ``lead_id``; cached across read-only requests.

    Writes bump ``state.version`` after they run, so a read reuses the index built at the
    current version (and size); a write always builds a fresh one.
    """
    state = ctx.state
    objs = state[collection]
    cacheable = ctx.endpoint.access == "read"
    stamp = (state.version, len(objs))
    if cacheable:
        cached = state.derived.get(f"by_lead:{collection}")
        if cached is not None and cached[0] == stamp:
            return cast(dict[str, list[Obj]], cached[1])
    index: dict[str, list[Obj]] = defaultdict(list)
    for obj in objs.values():
        index[str(obj.get("lead_id"))].append(obj)
    if cacheable:
        state.derived[f"by_lead:{collection}"] = (stamp, index)
    return index


def render_lead(ctx: Ctx, lead: Obj, index: dict[str, dict[str, list[Obj]]] | None = None) -> Obj:
    def children(collection: str) -> list[Obj]:
        if index is not None:
            return index[collection].get(lead["id"], [])
        if ctx.endpoint.access == "read":
            return by_lead(ctx, collection).get(lead["id"], [])
        return [o for o in ctx.state[collection].values() if o.get("lead_id") == lead["id"]]

    return {
        **lead,
        "contacts": [dict(c) for c in children("contacts")],
        "opportunities": [dict(o) for o in children("opportunities")],
        "tasks": [dict(t) for t in children("tasks")],
    }


def render_user(ctx: Ctx, user: Obj) -> Obj:
    org = ctx.state.organization
    return {**user, "organizations": [{"id": org["id"], "name": org["name"]}]}


def render_org(ctx: Ctx, org: Obj) -> Obj:
    members = [
        {"user_id": u["id"], "user_full_name": u["display_name"], "role_id": "admin"}
        for u in ctx.state["users"].values()
    ]
    return {
        **org,
        "memberships": members,
        "lead_statuses": list(ctx.state["lead_statuses"].values()),
        "opportunity_statuses": list(ctx.state["opportunity_statuses"].values()),
    }


def render_pipeline(ctx: Ctx, pipeline: Obj) -> Obj:
    statuses = [
        s for s in ctx.state["opportunity_statuses"].values() if s["pipeline_id"] == pipeline["id"]
    ]
    return {**pipeline, "statuses": statuses}


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
    for key, value in fields.items():
        if not CUSTOM_FIELD_KEY.match(key):
            continue
        cf_id = key.removeprefix("custom.")
        definition = ctx.state[f"custom_fields.{cf_object}"].get(cf_id) if cf_object else None
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
    """Set ``fields`` on ``obj`` (a ``None`` custom value removes it); what changed."""
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


# -- leads ---------------------------------------------------------------------------------


def _lead_status(ctx: Ctx, status_id: str) -> Obj:
    return ctx.state["lead_statuses"][status_id]


def _default_lead_status(ctx: Ctx) -> str:
    return next(iter(ctx.state["lead_statuses"]))


def _check_lead_fields(ctx: Ctx, fields: dict[str, Any], errors: dict[str, str]) -> None:
    refuse_null(fields, ("status_id",), errors)
    if (
        fields.get("status_id") is not None
        and fields["status_id"] not in ctx.state["lead_statuses"]
    ):
        errors["status_id"] = "Lead status does not exist."
    check_custom(ctx, "lead", fields, errors)


def _new_contact(ctx: Ctx, lead_id: str, fields: dict[str, Any]) -> Obj:
    contact: Obj = {
        "id": ctx.new_id("cont"),
        "lead_id": lead_id,
        "name": fields.get("name"),
        "display_name": fields.get("name") or "",
        "title": fields.get("title"),
        "emails": [{"type": "office", **e} for e in fields.get("emails") or []],
        "phones": [{"type": "office", **p} for p in fields.get("phones") or []],
        "urls": [{"type": "url", **u} for u in fields.get("urls") or []],
    }
    contact.update({k: v for k, v in fields.items() if CUSTOM_FIELD_KEY.match(k) and v is not None})
    return ctx.stamp_new(contact)


def lead_list(ctx: Ctx) -> Result:
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    leads = list(ctx.state["leads"].values())
    contacts = by_lead(ctx, "contacts")
    if params.get("query"):
        test = lead_query(ctx, str(params["query"]), contacts)
        leads = [lead for lead in leads if test(lead)]
    index = {
        "contacts": contacts,
        "opportunities": by_lead(ctx, "opportunities"),
        "tasks": by_lead(ctx, "tasks"),
    }
    return list_response(
        ctx, params, leads, total=True, render_one=lambda lead: render_lead(ctx, lead, index)
    )


_TOKEN = re.compile(r'(?:([A-Za-z_]+):)?(?:"([^"]*)"|(\S+))')


def lead_query(ctx: Ctx, query: str, contacts: dict[str, list[Obj]]) -> Callable[[Obj], bool]:
    """Close's lead search, a simple subset: free text and ``field:value`` terms ANDed.

    Free text matches the lead name, contact names and email addresses (substring, any
    case). ``name:``/``company:`` match the lead name, ``email:`` a contact email,
    ``status:``/``lead_status:`` the status label (exact, any case), ``id:`` the lead id,
    ``phone:`` a contact phone; ``sort:`` is accepted and ignored.
    """
    tests: list[Callable[[Obj], bool]] = []
    for match in _TOKEN.finditer(query):
        key = (match.group(1) or "").lower()
        value = (match.group(2) if match.group(2) is not None else match.group(3) or "").lower()
        tests.append(_lead_term(ctx, key, value, contacts))
    return lambda lead: all(test(lead) for test in tests)


def _lead_term(
    ctx: Ctx, key: str, value: str, contacts: dict[str, list[Obj]]
) -> Callable[[Obj], bool]:
    def emails(lead: Obj) -> list[str]:
        return [
            str(e.get("email", "")).lower()
            for c in contacts.get(lead["id"], [])
            for e in c.get("emails", [])
        ]

    if key in ("name", "company"):
        return lambda lead: value in str(lead.get("name") or "").lower()
    if key == "email":
        return lambda lead: any(value == e or value in e for e in emails(lead))
    if key in ("status", "lead_status"):
        return lambda lead: str(lead.get("status_label", "")).lower() == value
    if key == "id":
        return lambda lead: lead["id"].lower() == value
    if key == "phone":
        digits = re.sub(r"\D", "", value)
        return lambda lead: any(
            digits and digits in re.sub(r"\D", "", str(p.get("phone", "")))
            for c in contacts.get(lead["id"], [])
            for p in c.get("phones", [])
        )
    if key == "sort":
        return lambda lead: True
    text = f"{key}:{value}" if key else value

    def free(lead: Obj) -> bool:
        hay = [str(lead.get("name") or "").lower(), *emails(lead)]
        hay += [str(c.get("name") or "").lower() for c in contacts.get(lead["id"], [])]
        return any(text in h for h in hay)

    return free


def lead_get(ctx: Ctx) -> Result:
    lead = lookup(ctx, KINDS["lead"], ctx.path_params["id"])
    return 200, output(ctx, render_lead(ctx, lead))


def lead_create(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    _check_lead_fields(ctx, fields, errors)
    nested = fields.pop("contacts", None) or []
    for i, contact in enumerate(nested):
        check_emails(contact.get("emails"), f"contacts.{i}.emails", errors)
        sub: dict[str, str] = {}
        check_custom(ctx, "contact", contact, sub)
        errors.update({f"contacts.{i}.{k}": v for k, v in sub.items()})
    if errors:
        raise bad_request(errors)
    status_id = fields.get("status_id") or _default_lead_status(ctx)
    lead: Obj = {
        "id": ctx.new_id("lead"),
        "name": fields.get("name"),
        "display_name": fields.get("name") or "",
        "status_id": status_id,
        "status_label": _lead_status(ctx, status_id)["label"],
        "description": fields.get("description") or "",
        "url": fields.get("url"),
        "addresses": fields.get("addresses") or [],
    }
    lead.update({k: v for k, v in fields.items() if CUSTOM_FIELD_KEY.match(k) and v is not None})
    ctx.stamp_new(lead)
    ctx.state["leads"][lead["id"]] = lead
    ctx.emit("lead", "created", lead, lead_id=lead["id"])
    for contact_fields in nested:
        contact = _new_contact(ctx, lead["id"], contact_fields)
        ctx.state["contacts"][contact["id"]] = contact
        ctx.emit("contact", "created", contact)
    return 200, output(ctx, render_lead(ctx, lead))


def lead_update(ctx: Ctx) -> Result:
    lead = lookup(ctx, KINDS["lead"], ctx.path_params["id"])
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    _check_lead_fields(ctx, fields, errors)
    if errors:
        raise bad_request(errors)
    if "name" in fields:
        fields["display_name"] = fields["name"] or ""
    if "status_id" in fields:
        fields["status_label"] = _lead_status(ctx, fields["status_id"])["label"]
    old_status = lead["status_id"]
    changed, previous = apply_fields(lead, fields)
    if changed:
        touch(ctx, lead)
        ctx.emit(
            "lead",
            "updated",
            lead,
            changed_fields=changed,
            previous_data=previous,
            lead_id=lead["id"],
        )
        if "status_id" in changed:
            _status_change_activity(ctx, lead, old_status)
    return 200, output(ctx, render_lead(ctx, lead))


def _status_change_activity(ctx: Ctx, lead: Obj, old_status: str) -> None:
    old = ctx.state["lead_statuses"].get(old_status, {})
    activity: Obj = {
        "id": ctx.new_id("acti"),
        "_type": "LeadStatusChange",
        "lead_id": lead["id"],
        "contact_id": None,
        "user_id": ctx.user_id,
        "old_status_id": old_status,
        "old_status_label": old.get("label"),
        "new_status_id": lead["status_id"],
        "new_status_label": lead["status_label"],
    }
    ctx.stamp_new(activity)
    ctx.state["activities"][activity["id"]] = activity
    ctx.emit("activity.lead_status_change", "created", activity)


def _delete_lead_children(ctx: Ctx, lead_id: str) -> None:
    for collection, object_type in (
        ("activities", None),
        ("tasks", "task"),
        ("opportunities", "opportunity"),
        ("contacts", "contact"),
    ):
        store = ctx.state[collection]
        for obj in [o for o in store.values() if o.get("lead_id") == lead_id]:
            del store[obj["id"]]
            ctx.emit(object_type or activity_object_type(obj), "deleted", obj)


def lead_delete(ctx: Ctx) -> Result:
    lead = lookup(ctx, KINDS["lead"], ctx.path_params["id"])
    _delete_lead_children(ctx, lead["id"])
    del ctx.state["leads"][lead["id"]]
    ctx.emit("lead", "deleted", lead, lead_id=lead["id"])
    return 200, {}


def lead_merge(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    source_id, dest_id = fields["source"], fields["destination"]
    errors: dict[str, str] = {}
    if source_id not in ctx.state["leads"]:
        errors["source"] = "Lead does not exist."
    if dest_id not in ctx.state["leads"]:
        errors["destination"] = "Lead does not exist."
    if not errors and source_id == dest_id:
        errors["destination"] = "Source and destination must be different leads."
    if errors:
        raise bad_request(errors)
    source, dest = ctx.state["leads"][source_id], ctx.state["leads"][dest_id]
    for collection in ("contacts", "opportunities", "tasks", "activities"):
        for obj in ctx.state[collection].values():
            if obj.get("lead_id") != source_id:
                continue
            obj["lead_id"] = dest_id
            if collection == "tasks":
                obj["lead_name"] = dest.get("name")
            touch(ctx, obj)
            object_type = {
                "contacts": "contact",
                "opportunities": "opportunity",
                "tasks": "task",
            }.get(collection) or activity_object_type(obj)
            ctx.emit(
                object_type,
                "updated",
                obj,
                changed_fields=["lead_id"],
                previous_data={"lead_id": source_id},
            )
    merged = {k: v for k, v in source.items() if CUSTOM_FIELD_KEY.match(k) and k not in dest}
    if source.get("addresses"):
        merged["addresses"] = [*dest.get("addresses", []), *source["addresses"]]
    if not dest.get("description") and source.get("description"):
        merged["description"] = source["description"]
    changed, previous = apply_fields(dest, merged)
    if changed:
        touch(ctx, dest)
        ctx.emit(
            "lead", "updated", dest, changed_fields=changed, previous_data=previous, lead_id=dest_id
        )
    del ctx.state["leads"][source_id]
    ctx.emit("lead", "deleted", source, lead_id=source_id)
    ctx.emit(
        "lead",
        "merged",
        dest,
        lead_id=dest_id,
        meta={"merge_source_lead_id": source_id, "merge_destination_lead_id": dest_id},
    )
    return 200, output(ctx, render_lead(ctx, dest))


# -- generic CRUD for the other resources -------------------------------------------------


def generic_get(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        return 200, output(ctx, render(ctx, resource, lookup(ctx, kind, ctx.path_params["id"])))

    return handler


def generic_list(resource: str, filters: Callable[[Ctx, dict[str, Any], Obj], bool]) -> Handler:
    kind = KINDS.get(resource)

    def handler(ctx: Ctx) -> Result:
        params = parse_query(ctx.endpoint.query_model, ctx.query)
        collection = kind.collection if kind else "activities"
        items = [o for o in ctx.state[collection].values() if filters(ctx, params, o)]
        if collection == "activities":
            items.sort(key=lambda a: (a["date_created"], a["id"]), reverse=True)
        if kind and kind.activity_type:
            items = [a for a in items if a.get("_type") == kind.activity_type]
        return list_response(ctx, params, items, total=resource == "opportunity")

    return handler


def _eq_filters(*keys: str) -> Callable[[Ctx, dict[str, Any], Obj], bool]:
    def test(_ctx: Ctx, params: dict[str, Any], obj: Obj) -> bool:
        return all(obj.get(k) == params[k] for k in keys if params.get(k) is not None)

    return test


def _activity_filter(ctx: Ctx, params: dict[str, Any], obj: Obj) -> bool:
    if not _eq_filters("lead_id", "contact_id", "user_id", "_type")(ctx, params, obj):
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


def _task_filter(ctx: Ctx, params: dict[str, Any], obj: Obj) -> bool:
    if not _eq_filters("lead_id", "assigned_to", "is_complete")(ctx, params, obj):
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


# contacts


def contact_create(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    require_lead(ctx, fields, errors)
    check_emails(fields.get("emails"), "emails", errors)
    check_custom(ctx, "contact", fields, errors)
    if errors:
        raise bad_request(errors)
    contact = _new_contact(ctx, fields["lead_id"], fields)
    ctx.state["contacts"][contact["id"]] = contact
    ctx.emit("contact", "created", contact)
    return 200, output(ctx, dict(contact))


def contact_update(ctx: Ctx) -> Result:
    contact = lookup(ctx, KINDS["contact"], ctx.path_params["id"])
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    check_emails(fields.get("emails"), "emails", errors)
    check_custom(ctx, "contact", fields, errors)
    if errors:
        raise bad_request(errors)
    for key, default_type in (("emails", "office"), ("phones", "office"), ("urls", "url")):
        if key in fields:
            fields[key] = [{"type": default_type, **v} for v in fields[key] or []]
    if "name" in fields:
        fields["display_name"] = fields["name"] or ""
    return _finish_update(ctx, "contact", contact, fields)


def _finish_update(ctx: Ctx, object_type: str, obj: Obj, fields: dict[str, Any]) -> Result:
    changed, previous = apply_fields(obj, fields)
    if changed:
        touch(ctx, obj)
        ctx.emit(object_type, "updated", obj, changed_fields=changed, previous_data=previous)
    return 200, output(ctx, dict(obj))


def generic_delete(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        obj = lookup(ctx, kind, ctx.path_params["id"])
        del ctx.state[kind.collection][obj["id"]]
        if kind.object_type:
            ctx.emit(kind.object_type, "deleted", obj)
        if resource.startswith("custom_field."):
            key = f"custom.{obj['id']}"
            for _name, other in ctx.state.iter_objects():
                other.pop(key, None)
        return 200, {}

    return handler


# opportunities


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
    ctx.state["opportunities"][opp["id"]] = opp
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
    status, body = _finish_update(ctx, "opportunity", opp, fields)
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
        ctx.state["activities"][activity["id"]] = activity
        ctx.emit("activity.opportunity_status_change", "created", activity)
    return status, body


# activities


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
        ctx.state["activities"][activity["id"]] = activity
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
        result = _finish_update(ctx, str(kind.object_type), activity, fields)
        if sending:
            ctx.emit(str(kind.object_type), "sent", activity)
        return result

    return handler


# tasks


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
    ctx.state["tasks"][task["id"]] = task
    ctx.emit("task", "created", task)
    return 200, output(ctx, dict(task))


def _apply_task_update(ctx: Ctx, task: Obj, fields: dict[str, Any]) -> None:
    was_complete = bool(task.get("is_complete"))
    _finish_update(ctx, "task", task, fields)
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
    matches = [t for t in ctx.state["tasks"].values() if _task_filter(ctx, params, t)]
    for task in matches:
        _apply_task_update(ctx, task, dict(fields))
    return 200, {"data": [output(ctx, dict(t)) for t in matches], "has_more": False}


# custom field definitions


def custom_field_create(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        fields = body_args(ctx)
        if fields["type"] == "choices" and not fields.get("choices"):
            raise bad_request({"choices": "A choices field needs a list of choices."})
        definition: Obj = {
            "id": ctx.new_id("cf"),
            "name": fields["name"],
            "type": fields["type"],
            "choices": fields.get("choices") if fields["type"] == "choices" else None,
            "accepts_multiple_values": bool(fields.get("accepts_multiple_values")),
            "description": fields.get("description") or "",
        }
        ctx.stamp_new(definition)
        ctx.state[kind.collection][definition["id"]] = definition
        return 200, output(ctx, dict(definition))

    return handler


def custom_field_update(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        definition = lookup(ctx, kind, ctx.path_params["id"])
        fields = body_args(ctx)
        if "choices" in fields and definition["type"] != "choices":
            raise bad_request({"choices": "Only a choices field has choices."})
        if fields.get("accepts_multiple_values") is None:
            fields.pop("accepts_multiple_values", None)
        changed, _ = apply_fields(definition, fields)
        if changed:
            touch(ctx, definition)
        return 200, output(ctx, dict(definition))

    return handler


# webhooks


def _check_webhook(fields: dict[str, Any], errors: dict[str, str]) -> None:
    if "url" in fields:
        parts = urlsplit(str(fields["url"]))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors["url"] = "Enter a valid http(s) URL."
    if "events" in fields and not fields["events"]:
        errors["events"] = "Subscribe to at least one event."
    for i, event in enumerate(fields.get("events") or []):
        if not event.get("object_type") or not event.get("action"):
            errors[f"events.{i}"] = "object_type and action are required."


def webhook_create(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    _check_webhook(fields, errors)
    if errors:
        raise bad_request(errors)
    if len(ctx.state["webhooks"]) >= MAX_WEBHOOKS:
        raise bad_request(
            None, f"An organization can have at most {MAX_WEBHOOKS} webhook subscriptions."
        )
    hook: Obj = {
        "id": ctx.new_id("whsub"),
        "url": fields["url"],
        "events": [_event_filter(e) for e in fields["events"]],
        "status": "active",
        "verify_ssl": True if fields.get("verify_ssl") is None else fields["verify_ssl"],
        "signature_key": ctx.state.ids.hex_secret(),
    }
    ctx.stamp_new(hook)
    ctx.state["webhooks"][hook["id"]] = hook
    return 200, output(ctx, dict(hook))


def _event_filter(event: dict[str, Any]) -> dict[str, Any]:
    out = {"object_type": event["object_type"], "action": event["action"]}
    if event.get("extra_filter") is not None:
        out["extra_filter"] = event["extra_filter"]
    return out


def _public_hook(hook: Obj) -> Obj:
    return {k: v for k, v in hook.items() if k != "signature_key"}


def webhook_get(ctx: Ctx) -> Result:
    return 200, output(ctx, _public_hook(lookup(ctx, KINDS["webhook"], ctx.path_params["id"])))


def webhook_list(ctx: Ctx) -> Result:
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    hooks = [_public_hook(h) for h in ctx.state["webhooks"].values()]
    return list_response(ctx, params, hooks)


def webhook_update(ctx: Ctx) -> Result:
    hook = lookup(ctx, KINDS["webhook"], ctx.path_params["id"])
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    refuse_null(fields, ("url", "events", "status", "verify_ssl"), errors)
    _check_webhook(fields, errors)
    if errors:
        raise bad_request(errors)
    if "events" in fields:
        fields["events"] = [_event_filter(e) for e in fields["events"]]
    changed, _ = apply_fields(hook, fields)
    if changed:
        touch(ctx, hook)
    return 200, output(ctx, _public_hook(hook))


# statuses, pipelines, users, organization


def static_list(collection: str, render_one: Callable[[Ctx, Obj], Obj] | None = None) -> Handler:
    def handler(ctx: Ctx) -> Result:
        items = [
            render_one(ctx, o) if render_one else dict(o) for o in ctx.state[collection].values()
        ]
        return 200, {"data": [output(ctx, o) for o in items], "has_more": False}

    return handler


def user_me(ctx: Ctx) -> Result:
    return 200, output(ctx, render_user(ctx, ctx.state["users"][ctx.user_id]))


def user_list(ctx: Ctx) -> Result:
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    users = list(ctx.state["users"].values())
    return list_response(ctx, params, users, render_one=lambda u: render_user(ctx, u))


def user_get(ctx: Ctx) -> Result:
    user = ctx.state["users"].get(ctx.path_params["id"])
    if user is None:
        raise not_found()
    return 200, output(ctx, render_user(ctx, user))


def _own_org(ctx: Ctx) -> Obj:
    if ctx.path_params["id"] != ctx.org_id:
        raise not_found()
    return ctx.state.organization


def organization_get(ctx: Ctx) -> Result:
    return 200, output(ctx, render_org(ctx, _own_org(ctx)))


def organization_update(ctx: Ctx) -> Result:
    org = _own_org(ctx)
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    refuse_null(fields, ("name", "currency"), errors)
    if fields.get("currency") is not None and not CURRENCY_RE.match(fields["currency"]):
        errors["currency"] = "Enter a three-letter ISO currency code."
    if errors:
        raise bad_request(errors)
    changed, _ = apply_fields(org, fields)
    if changed:
        touch(ctx, org)
    return 200, output(ctx, render_org(ctx, org))


# event log


def event_list(ctx: Ctx) -> Result:
    if "_skip" in ctx.query:
        raise bad_request({"_skip": "The Event Log pages by _cursor; _skip is not supported."})
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    limit = params.get("_limit") or DEFAULT_LIMIT
    if limit > EVENT_MAX_LIMIT:
        raise bad_request(
            {"_limit": f"Ensure this value is less than or equal to {EVENT_MAX_LIMIT}."}
        )
    ctx.log.prune(ctx.now)
    filters = {k: v for k, v in params.items() if not k.startswith("_")}
    try:
        data, nxt, prev = ctx.log.page(filters, params.get("_cursor"), limit)
    except CursorError:
        raise bad_request({"_cursor": "Invalid cursor."}) from None
    except ValueError:
        raise bad_request(None, "Invalid date filter; use ISO-8601.") from None
    return 200, {
        "data": [output(ctx, e) for e in data],
        "cursor_next": nxt,
        "cursor_previous": prev,
    }


def event_get(ctx: Ctx) -> Result:
    ctx.log.prune(ctx.now)
    event = ctx.log.get(ctx.path_params["id"])
    if event is None:
        raise not_found("Event")
    return 200, output(ctx, event)


# advanced filtering


def data_search(ctx: Ctx) -> Result:
    """``POST /data/search/``: a documented subset of Close's Advanced Filtering.

    Query nodes: ``and``/``or`` (``queries``), ``negate`` (``query``), ``object_type``
    (``lead`` or ``contact``; default lead), ``text`` (``value``: free text as in the lead
    ``query``), ``id`` (``value``), and ``field_condition`` on a ``regular_field`` or
    ``custom_field`` with conditions ``term`` (``values``), ``text`` (``value``, substring),
    ``exists``, ``boolean`` (``value``) and ``number_range`` (``gt``/``gte``/``lt``/``lte``).
    ``sort`` takes ``[{"field": {"field_name": ...}, "direction": "asc"|"desc"}]``.
    Results carry ``id`` and ``__object_type`` unless ``_fields`` names more, e.g.
    ``{"lead": ["id", "name"]}``. Paging by opaque ``cursor``.
    """
    fields = body_args(ctx)
    limit = fields.get("_limit") or DEFAULT_PAGE
    if ctx.endpoint.max_limit is not None and limit > ctx.endpoint.max_limit:
        raise bad_request(
            {"_limit": f"Ensure this value is less than or equal to {ctx.endpoint.max_limit}."}
        )
    offset = _decode_search_cursor(fields.get("cursor"))
    query = fields["query"]
    contacts = by_lead(ctx, "contacts")
    searcher = _Search(ctx, contacts)
    object_type = searcher.object_type(query) or "lead"
    pool = ctx.state["leads" if object_type == "lead" else "contacts"].values()
    hits = [obj for obj in pool if searcher.matches(query, object_type, obj)]
    for sort in reversed(fields.get("sort") or []):
        hits = _sorted(hits, sort)
    chunk = hits[offset : offset + limit]
    wanted = (fields.get("_fields") or {}).get(object_type)
    data = []
    for obj in chunk:
        full = render_lead(ctx, obj) if object_type == "lead" else dict(obj)
        keys = wanted if isinstance(wanted, list) else ["id"]
        data.append({"__object_type": object_type, **{k: full.get(k) for k in keys}})
    more = offset + limit < len(hits)
    cursor = _encode_search_cursor(offset + limit) if more else None
    return 200, {"data": data, "cursor": cursor}


def _encode_search_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_search_cursor(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        padded = str(cursor) + "=" * (-len(str(cursor)) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        raise bad_request({"cursor": "Invalid cursor."}) from None
    if not isinstance(offset, int) or offset < 0:
        raise bad_request({"cursor": "Invalid cursor."})
    return offset


def _sorted(hits: list[Obj], sort: Any) -> list[Obj]:
    if not isinstance(sort, dict) or not isinstance(sort.get("field"), dict):
        raise bad_request({"sort": "Each sort needs a field object."})
    name = sort["field"].get("field_name") or sort["field"].get("custom_field_id")
    if sort["field"].get("custom_field_id"):
        name = f"custom.{name}"
    reverse = sort.get("direction", "asc") == "desc"
    present = [h for h in hits if h.get(name) is not None]
    missing = [h for h in hits if h.get(name) is None]
    return (
        sorted(
            present,
            key=lambda h: str(h[name]) if not isinstance(h[name], int | float) else h[name],
            reverse=reverse,
        )
        + missing
    )


class _Search:
    def __init__(self, ctx: Ctx, contacts: dict[str, list[Obj]]) -> None:
        self.ctx = ctx
        self.contacts = contacts

    def object_type(self, node: Any) -> str | None:
        if not isinstance(node, dict):
            return None
        if node.get("type") == "object_type":
            value = node.get("object_type")
            if value not in ("lead", "contact"):
                raise bad_request({"query": f"Unsupported object_type {value!r}."})
            return str(value)
        children = node.get("queries")
        for child in children if isinstance(children, list) else []:
            found = self.object_type(child)
            if found:
                return found
        return None

    def matches(self, node: Any, object_type: str, obj: Obj) -> bool:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise bad_request({"query": "Each query node needs a type."})
        kind = node["type"]
        if kind in ("and", "or"):
            children = node.get("queries")
            if not isinstance(children, list):
                raise bad_request({"query": f"An {kind} node needs a list of queries."})
            results = (self.matches(c, object_type, obj) for c in children)
            return all(results) if kind == "and" else any(results)
        if kind == "negate":
            return not self.matches(node.get("query"), object_type, obj)
        if kind == "object_type":
            return node.get("object_type") == object_type
        if kind == "id":
            return bool(obj["id"] == node.get("value"))
        if kind == "text":
            value = str(node.get("value", ""))
            if object_type == "lead":
                return lead_query(self.ctx, value, self.contacts)(obj)
            hay = [str(obj.get("name") or ""), *(e.get("email", "") for e in obj["emails"])]
            return any(value.lower() in str(h).lower() for h in hay)
        if kind == "field_condition":
            return self._field_condition(node, obj)
        raise bad_request({"query": f"Unsupported query type {kind!r} (see the simulator docs)."})

    def _field_condition(self, node: Obj, obj: Obj) -> bool:
        spec, cond = node.get("field"), node.get("condition")
        if not isinstance(spec, dict) or not isinstance(cond, dict):
            raise bad_request({"query": "field_condition needs field and condition objects."})
        if spec.get("type") == "custom_field":
            value = obj.get(f"custom.{spec.get('custom_field_id')}")
        else:
            value = obj.get(str(spec.get("field_name")))
        kind = cond.get("type")
        if kind == "term":
            values = cond.get("values") or []
            return value in values or (isinstance(value, list) and any(v in values for v in value))
        if kind == "text":
            return str(cond.get("value", "")).lower() in str(value or "").lower()
        if kind == "exists":
            return value not in (None, "", [])
        if kind == "boolean":
            return bool(value) == bool(cond.get("value"))
        if kind == "number_range":
            if not isinstance(value, int | float):
                return False
            tests = {
                "gt": value.__gt__,
                "gte": value.__ge__,
                "lt": value.__lt__,
                "lte": value.__le__,
            }
            return all(bool(t(cond[k])) for k, t in tests.items() if cond.get(k) is not None)
        raise bad_request({"query": f"Unsupported condition type {kind!r}."})


# -- the table -----------------------------------------------------------------------------


def _build() -> dict[str, Handler]:
    table: dict[str, Handler] = {
        "lead.list": lead_list,
        "lead.get": lead_get,
        "lead.create": lead_create,
        "lead.update": lead_update,
        "lead.delete": lead_delete,
        "lead.merge": lead_merge,
        "contact.list": generic_list("contact", _eq_filters("lead_id")),
        "contact.get": generic_get("contact"),
        "contact.create": contact_create,
        "contact.update": contact_update,
        "contact.delete": generic_delete("contact"),
        "opportunity.list": generic_list(
            "opportunity",
            _eq_filters("lead_id", "status_id", "status_type", "pipeline_id", "user_id"),
        ),
        "opportunity.get": generic_get("opportunity"),
        "opportunity.create": opportunity_create,
        "opportunity.update": opportunity_update,
        "opportunity.delete": generic_delete("opportunity"),
        "activity.list": generic_list("activity", _activity_filter),
        "task.list": generic_list("task", _task_filter),
        "task.get": generic_get("task"),
        "task.create": task_create,
        "task.update": task_update,
        "task.delete": generic_delete("task"),
        "task.bulk_update": task_bulk_update,
        "status.lead.list": static_list("lead_statuses"),
        "status.opportunity.list": static_list("opportunity_statuses"),
        "pipeline.list": static_list("pipelines", render_pipeline),
        "user.me": user_me,
        "user.list": user_list,
        "user.get": user_get,
        "organization.get": organization_get,
        "organization.update": organization_update,
        "webhook.list": webhook_list,
        "webhook.get": webhook_get,
        "webhook.create": webhook_create,
        "webhook.update": webhook_update,
        "webhook.delete": generic_delete("webhook"),
        "event.list": event_list,
        "event.get": event_get,
        "data.search": data_search,
    }
    for kind in ("note", "call", "email"):
        res = f"activity.{kind}"
        table[f"{res}.list"] = generic_list(res, _activity_filter)
        table[f"{res}.get"] = generic_get(res)
        table[f"{res}.create"] = activity_create(res)
        table[f"{res}.update"] = activity_update(res)
        table[f"{res}.delete"] = generic_delete(res)
    for obj in ("lead", "contact", "opportunity", "activity"):
        res = f"custom_field.{obj}"
        table[f"{res}.list"] = generic_list(res, lambda _c, _p, _o: True)
        table[f"{res}.get"] = generic_get(res)
        table[f"{res}.create"] = custom_field_create(res)
        table[f"{res}.update"] = custom_field_update(res)
        table[f"{res}.delete"] = generic_delete(res)
    missing = {ep.name for ep in ENDPOINTS} - set(table)
    if missing:
        raise RuntimeError(f"simulator has no handler for {sorted(missing)}")
    return table


HANDLERS: dict[str, Handler] = _build()


__all__ = ["HANDLERS", "KINDS", "ApiError", "Ctx", "Handler", "activity_object_type"]
