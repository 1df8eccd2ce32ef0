"""Contacts: create, update (get, list and delete are generic)."""

from __future__ import annotations

from typing import Any

from closeguard.simulator._context import Ctx, bad_request, check_emails
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    body_args,
    check_custom,
    eq_filters,
    finish_update,
    lookup,
    output,
    require_lead,
)
from closeguard.simulator.handlers.crud import generic_delete, generic_get, generic_list
from closeguard.simulator.state import Obj
from closeguard.tools.models import CUSTOM_FIELD_KEY


def new_contact(ctx: Ctx, lead_id: str, fields: dict[str, Any]) -> Obj:
    """A contact object for ``lead_id`` from validated fields (not yet stored)."""
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


def contact_create(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    errors: dict[str, str] = {}
    require_lead(ctx, fields, errors)
    check_emails(fields.get("emails"), "emails", errors)
    check_custom(ctx, "contact", fields, errors)
    if errors:
        raise bad_request(errors)
    contact = ctx.state.add("contacts", new_contact(ctx, fields["lead_id"], fields))
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
    return finish_update(ctx, "contact", contact, fields)


HANDLERS: dict[str, Handler] = {
    "contact.list": generic_list("contact", eq_filters("lead_id")),
    "contact.get": generic_get("contact"),
    "contact.create": contact_create,
    "contact.update": contact_update,
    "contact.delete": generic_delete("contact"),
}
