"""Webhook subscriptions (at most 40 per organization; ``signature_key`` shown on create)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from closeguard.simulator._context import Ctx, bad_request, parse_query
from closeguard.simulator.handlers.common import (
    KINDS,
    Handler,
    Result,
    apply_fields,
    body_args,
    list_response,
    lookup,
    output,
    refuse_null,
    touch,
)
from closeguard.simulator.handlers.crud import generic_delete
from closeguard.simulator.state import Obj

MAX_WEBHOOKS = 40


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
    ctx.state.add("webhooks", hook)
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


HANDLERS: dict[str, Handler] = {
    "webhook.list": webhook_list,
    "webhook.get": webhook_get,
    "webhook.create": webhook_create,
    "webhook.update": webhook_update,
    "webhook.delete": generic_delete("webhook"),
}
