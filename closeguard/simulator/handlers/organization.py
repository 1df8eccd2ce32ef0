"""The organization, its users, lead and opportunity statuses and pipelines."""

from __future__ import annotations

from collections.abc import Callable

from closeguard.simulator._context import Ctx, bad_request, not_found, parse_query
from closeguard.simulator.handlers.common import (
    CURRENCY_RE,
    Handler,
    Result,
    apply_fields,
    body_args,
    list_response,
    output,
    refuse_null,
    touch,
)
from closeguard.simulator.state import Collection, Obj


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


def static_list(
    collection: Collection, render_one: Callable[[Ctx, Obj], Obj] | None = None
) -> Handler:
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


HANDLERS: dict[str, Handler] = {
    "status.lead.list": static_list("lead_statuses"),
    "status.opportunity.list": static_list("opportunity_statuses"),
    "pipeline.list": static_list("pipelines", render_pipeline),
    "user.me": user_me,
    "user.list": user_list,
    "user.get": user_get,
    "organization.get": organization_get,
    "organization.update": organization_update,
}
