"""Custom field definitions for leads, contacts, opportunities and activities."""

from __future__ import annotations

from closeguard.simulator._context import Ctx, bad_request
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    apply_fields,
    body_args,
    lookup,
    output,
    touch,
)
from closeguard.simulator.handlers.crud import generic_delete, generic_get, generic_list
from closeguard.simulator.state import CUSTOM_FIELD_COLLECTIONS, Obj


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
        ctx.state.add(kind.collection, definition)
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


HANDLERS: dict[str, Handler] = {}
for _obj in CUSTOM_FIELD_COLLECTIONS:
    _res = f"custom_field.{_obj}"
    HANDLERS[f"{_res}.list"] = generic_list(_res, lambda _c, _p, _o: True)
    HANDLERS[f"{_res}.get"] = generic_get(_res)
    HANDLERS[f"{_res}.create"] = custom_field_create(_res)
    HANDLERS[f"{_res}.update"] = custom_field_update(_res)
    HANDLERS[f"{_res}.delete"] = generic_delete(_res)
