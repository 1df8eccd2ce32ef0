"""Leads: list (with Close's lead ``query``), get, create, update, delete, merge.

Deleting a lead deletes its contacts, opportunities, tasks and activities; a merge moves
them to the destination. Both read the lead -> children indexes, never the whole pool.
Every event a merge causes carries ``merge_source_lead_id``/``merge_destination_lead_id``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from closeguard.simulator._context import Ctx, bad_request, check_emails, parse_query
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    activity_object_type,
    apply_fields,
    body_args,
    check_custom,
    list_response,
    lookup,
    output,
    refuse_null,
    render_lead,
    touch,
)
from closeguard.simulator.handlers.contacts import new_contact
from closeguard.simulator.state import ChildCollection, Obj, OrgState
from closeguard.tools.models import CUSTOM_FIELD_KEY

# Children in the order a cascade deletes them; None: the activity's own object type.
_CHILD_TYPES: tuple[tuple[ChildCollection, str | None], ...] = (
    ("activities", None),
    ("tasks", "task"),
    ("opportunities", "opportunity"),
    ("contacts", "contact"),
)
_MERGE_ORDER: tuple[ChildCollection, ...] = ("contacts", "opportunities", "tasks", "activities")


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


def lead_list(ctx: Ctx) -> Result:
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    leads = list(ctx.state["leads"].values())
    if params.get("query"):
        test = lead_query(ctx.state, str(params["query"]))
        leads = [lead for lead in leads if test(lead)]
    return list_response(
        ctx, params, leads, total=True, render_one=lambda lead: render_lead(ctx, lead)
    )


_TOKEN = re.compile(r'(?:([A-Za-z_]+):)?(?:"([^"]*)"|(\S+))')


def lead_query(state: OrgState, query: str) -> Callable[[Obj], bool]:
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
        tests.append(_lead_term(state, key, value))
    return lambda lead: all(test(lead) for test in tests)


def _lead_term(state: OrgState, key: str, value: str) -> Callable[[Obj], bool]:
    def contacts(lead: Obj) -> list[Obj]:
        return state.children("contacts", lead["id"])

    def emails(lead: Obj) -> list[str]:
        return [
            str(e.get("email", "")).lower() for c in contacts(lead) for e in c.get("emails", [])
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
            for c in contacts(lead)
            for p in c.get("phones", [])
        )
    if key == "sort":
        return lambda lead: True
    text = f"{key}:{value}" if key else value

    def free(lead: Obj) -> bool:
        hay = [str(lead.get("name") or "").lower(), *emails(lead)]
        hay += [str(c.get("name") or "").lower() for c in contacts(lead)]
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
    ctx.state.add("leads", lead)
    ctx.emit("lead", "created", lead, lead_id=lead["id"])
    for contact_fields in nested:
        contact = ctx.state.add("contacts", new_contact(ctx, lead["id"], contact_fields))
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
    ctx.state.add("activities", activity)
    ctx.emit("activity.lead_status_change", "created", activity)


def lead_delete(ctx: Ctx) -> Result:
    lead = lookup(ctx, KINDS["lead"], ctx.path_params["id"])
    for collection, object_type in _CHILD_TYPES:
        for obj in ctx.state.children(collection, lead["id"]):
            ctx.state.remove(collection, obj["id"])
            ctx.emit(object_type or activity_object_type(obj), "deleted", obj)
    ctx.state.remove("leads", lead["id"])
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
    ctx.extra_meta = {"merge_source_lead_id": source_id, "merge_destination_lead_id": dest_id}
    source, dest = ctx.state["leads"][source_id], ctx.state["leads"][dest_id]
    for collection in _MERGE_ORDER:
        for obj in ctx.state.children(collection, source_id):
            ctx.state.reparent(collection, obj, dest_id)
            if collection == "tasks":
                obj["lead_name"] = dest.get("name")
            touch(ctx, obj)
            object_type = dict(_CHILD_TYPES).get(collection) or activity_object_type(obj)
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
    ctx.state.remove("leads", source_id)
    ctx.emit("lead", "deleted", source, lead_id=source_id)
    ctx.emit("lead", "merged", dest, lead_id=dest_id)
    return 200, output(ctx, render_lead(ctx, dest))


HANDLERS: dict[str, Handler] = {
    "lead.list": lead_list,
    "lead.get": lead_get,
    "lead.create": lead_create,
    "lead.update": lead_update,
    "lead.delete": lead_delete,
    "lead.merge": lead_merge,
}
