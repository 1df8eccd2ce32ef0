"""The catalog covers Close's methods and classifies concrete requests precisely."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeguard.tools.catalog import (
    BY_NAME,
    ENDPOINTS,
    RESOURCES,
    access_allows,
    allowed_methods,
    classify,
    endpoint,
    find_endpoint,
    relative_path,
    resource_ancestors,
)
from closeguard.tools.errors import UnknownEndpoint

# The 34 methods of Close's API guide, by method and path (kept here so the test stands alone).
GUIDE_METHODS = {
    ("GET", "/lead/"), ("POST", "/lead/"), ("GET", "/lead/{id}/"), ("PUT", "/lead/{id}/"),
    ("DELETE", "/lead/{id}/"), ("POST", "/lead/merge/"),
    ("GET", "/contact/"), ("POST", "/contact/"), ("GET", "/contact/{id}/"),
    ("PUT", "/contact/{id}/"), ("DELETE", "/contact/{id}/"),
    ("GET", "/opportunity/"), ("POST", "/opportunity/"), ("GET", "/opportunity/{id}/"),
    ("PUT", "/opportunity/{id}/"), ("DELETE", "/opportunity/{id}/"),
    ("GET", "/activity/"), ("POST", "/activity/note/"), ("POST", "/activity/call/"),
    ("POST", "/activity/email/"),
    ("GET", "/task/"), ("POST", "/task/"), ("PUT", "/task/"), ("PUT", "/task/{id}/"),
    ("DELETE", "/task/{id}/"),
    ("GET", "/custom_field/lead/"), ("POST", "/custom_field/lead/"),
    ("GET", "/me/"), ("GET", "/user/"), ("PUT", "/organization/{id}/"),
    ("GET", "/webhook/"), ("POST", "/webhook/"), ("DELETE", "/webhook/{id}/"), ("GET", "/event/"),
}  # fmt: skip

PRODUCT_METHODS = {
    ("GET", "/task/{id}/"), ("GET", "/status/lead/"), ("GET", "/status/opportunity/"),
    ("GET", "/pipeline/"), ("GET", "/user/{id}/"), ("GET", "/organization/{id}/"),
    ("GET", "/webhook/{id}/"), ("PUT", "/webhook/{id}/"), ("GET", "/event/{id}/"),
    ("POST", "/data/search/"),
} | {
    (method, f"/activity/{kind}/{suffix}")
    for kind in ("note", "call", "email")
    for method, suffix in (("GET", ""), ("GET", "{id}/"), ("PUT", "{id}/"), ("DELETE", "{id}/"))
} | {
    (method, f"/custom_field/{obj}/{suffix}")
    for obj in ("lead", "contact", "opportunity", "activity")
    for method, suffix in (
        ("GET", ""), ("POST", ""), ("GET", "{id}/"), ("PUT", "{id}/"), ("DELETE", "{id}/")
    )
}  # fmt: skip


def test_guide_has_34_methods_and_catalog_covers_them() -> None:
    assert len(GUIDE_METHODS) == 34
    have = {(ep.method, ep.path) for ep in ENDPOINTS}
    assert GUIDE_METHODS <= have, GUIDE_METHODS - have
    assert {(ep.method, ep.path) for ep in ENDPOINTS if ep.in_guide} == GUIDE_METHODS


def test_catalog_covers_product_methods_and_nothing_twice() -> None:
    have = [(ep.method, ep.path) for ep in ENDPOINTS]
    assert len(have) == len(set(have))
    assert PRODUCT_METHODS <= set(have), PRODUCT_METHODS - set(have)
    assert len(BY_NAME) == len(ENDPOINTS)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_is_complete(ep: object) -> None:
    from closeguard.tools.catalog import Endpoint

    assert isinstance(ep, Endpoint)
    assert ep.path.startswith("/") and ep.path.endswith("/")
    assert ep.resource in RESOURCES
    assert ep.summary
    if ep.method == "GET":
        assert ep.access == "read"
        assert ep.body_model is None
    if ep.method == "DELETE":
        assert ep.access == "destructive"
    if ep.method in ("POST", "PUT") and ep.name != "data.search":
        assert ep.body_model is not None
        assert ep.access in ("write", "destructive")
    if ep.paging is not None:
        assert ep.max_limit and ep.item_model is not None
    concrete = ep.format_path(**{p: "x_1" for p in ep.path_params})
    found, params = find_endpoint(ep.method, concrete)
    assert found is ep
    assert params == {p: "x_1" for p in ep.path_params}


@pytest.mark.parametrize(
    ("name", "access"),
    [
        ("lead.create", "write"),
        ("lead.update", "write"),
        ("lead.delete", "destructive"),
        ("lead.merge", "destructive"),
        ("task.bulk_update", "destructive"),
        ("organization.update", "destructive"),
        ("custom_field.lead.create", "destructive"),
        ("custom_field.contact.update", "destructive"),
        ("webhook.create", "destructive"),
        ("webhook.update", "destructive"),
        ("webhook.delete", "destructive"),
        ("activity.email.create", "write"),
        ("data.search", "read"),
        ("event.list", "read"),
    ],
)
def test_default_access_levels_follow_design(name: str, access: str) -> None:
    assert endpoint(name).access == access


def test_literal_paths_win_over_templates() -> None:
    ep, params = find_endpoint("POST", "/lead/merge/")
    assert ep.name == "lead.merge" and params == {}
    assert find_endpoint("PUT", "/lead/lead_abc/")[0].name == "lead.update"
    assert find_endpoint("PUT", "/task/")[0].name == "task.bulk_update"
    assert find_endpoint("PUT", "/task/task_1/")[0].name == "task.update"
    assert find_endpoint("GET", "/me/")[0].name == "user.me"


def test_classify_accepts_urls_prefixes_and_missing_slash() -> None:
    assert relative_path("https://api.close.com/api/v1/lead/lead_1?x=1") == "/lead/lead_1/"
    call = classify("get", "https://api.close.com/api/v1/lead/lead_1")
    assert call.name == "lead.get" and call.path_params == {"id": "lead_1"}
    assert call.access == "read"


@pytest.mark.parametrize(
    ("status", "access"),
    [
        ("outbox", "destructive"),
        ("scheduled", "destructive"),
        ("draft", "write"),
        ("inbox", "write"),
        (None, "write"),
    ],
)
def test_email_status_decides_access(status: str | None, access: str) -> None:
    body = {"lead_id": "lead_1", "subject": "hi"}
    if status is not None:
        body["status"] = status
    for method, path in (("POST", "/activity/email/"), ("PUT", "/activity/email/acti_1/")):
        call = classify(method, path, body)
        assert call.access == access
        assert (call.reason is not None) == (access == "destructive")


def test_unknown_endpoint_names_allowed_methods() -> None:
    with pytest.raises(UnknownEndpoint) as err:
        classify("PATCH", "/lead/lead_1/")
    assert err.value.allowed == ("DELETE", "GET", "PUT")
    with pytest.raises(UnknownEndpoint):
        classify("GET", "/nothing/here/")
    assert allowed_methods("/nothing/") == ()


def test_endpoint_lookup_suggests_close_names() -> None:
    with pytest.raises(KeyError, match=r"lead\.merge"):
        endpoint("lead.merg")


def test_resource_hierarchy_and_access_order() -> None:
    assert resource_ancestors("activity.email") == ("activity.email", "activity")
    assert resource_ancestors("lead") == ("lead",)
    assert access_allows("destructive", "write") and access_allows("write", "read")
    assert not access_allows("read", "write") and not access_allows("write", "destructive")


def test_webhook_events_recorded() -> None:
    assert endpoint("lead.merge").event == "lead.merged"
    assert endpoint("task.update").events == ("task.updated", "task.completed")
    assert "activity.email.sent" in endpoint("activity.email.create").events
    assert endpoint("lead.get").event is None


_SEGMENTS = st.sampled_from(
    [
        "lead",
        "merge",
        "task",
        "activity",
        "note",
        "email",
        "me",
        "custom_field",
        "status",
        "x_1",
        "data",
        "search",
        "event",
        "",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    segments=st.lists(_SEGMENTS, min_size=0, max_size=4),
)
def test_indexed_lookup_matches_a_linear_scan(method: str, segments: list[str]) -> None:
    """find_endpoint's index gives what trying every template, literals first, gives, and
    gives it again once remembered."""
    path = "/" + "".join(f"{s}/" for s in segments if s)
    candidates = sorted(
        (ep for ep in ENDPOINTS if ep.method == method),
        key=lambda ep: ep.path.count("{"),
    )
    expected = next(
        ((ep, found) for ep in candidates if (found := ep.match(path)) is not None), None
    )
    if expected is None:
        with pytest.raises(UnknownEndpoint):
            find_endpoint(method, path)
    else:
        assert find_endpoint(method, path) == expected
        assert find_endpoint(method, path) == expected


def test_a_remembered_lookup_hands_out_its_own_parameters() -> None:
    ep, params = find_endpoint("GET", "/lead/lead_cache/")
    params["id"] = "changed"
    assert find_endpoint("GET", "/lead/lead_cache/") == (ep, {"id": "lead_cache"})
    assert find_endpoint("GET", "https://api.close.com/api/v1/lead/lead_cache")[1] == {
        "id": "lead_cache"
    }


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_every_model_an_endpoint_names_is_a_model(ep: object) -> None:
    """The catalog names its models (so that classifying imports no pydantic); each name
    must be a pydantic model of ``tools.models``."""
    from pydantic import BaseModel

    from closeguard.tools import models
    from closeguard.tools.catalog import Endpoint

    assert isinstance(ep, Endpoint)
    for name, model in (
        (ep.result, ep.result_model),
        (ep.query, ep.query_model),
        (ep.body, ep.body_model),
        (ep.item, ep.item_model),
    ):
        if name is None:
            assert model is None
        else:
            assert isinstance(model, type) and issubclass(model, BaseModel)
            assert model is getattr(models, name)


def test_access_is_one_type_wherever_it_is_imported() -> None:
    from closeguard.tools import access, models

    assert models.Access is access.Access


def test_the_argument_table_is_the_models() -> None:
    """``tools.fields`` restates every body and query model's wire names and plain types;
    on a mismatch, paste the printed table into it."""
    from closeguard.tools import models
    from closeguard.tools.fields import ARGUMENTS, kind_of

    names = sorted({n for ep in ENDPOINTS for n in (ep.body, ep.query) if n})
    expected = {
        name: {
            (f.alias or key): kind_of(f.annotation)
            for key, f in getattr(models, name).model_fields.items()
        }
        for name in names
    }
    assert ARGUMENTS == expected, "ARGUMENTS = " + repr(expected)
    assert [list(v) for v in ARGUMENTS.values()] == [list(v) for v in expected.values()]


SAMPLES = (
    None,
    "",
    "draft",
    "inbound",
    "x|y",
    0,
    7,
    -1,
    1.5,
    True,
    False,
    [],
    ["a"],
    [1],
    ("a",),
    {},
)


def test_a_plain_kind_accepts_what_pydantic_strictly_accepts() -> None:
    """Every plain kind in the table (and a few more) decides each sample as pydantic's
    strict validation of the field's type does, so a policy's values are checked the same
    with or without pydantic."""
    from typing import Literal

    from pydantic import TypeAdapter, ValidationError

    from closeguard.tools import models
    from closeguard.tools.fields import ARGUMENTS, accepts, kind_of

    annotations = [
        f.annotation for name in ARGUMENTS for f in getattr(models, name).model_fields.values()
    ]
    annotations += [Literal["a", "b"], list[str], bool, int | None, str | int, dict[str, int]]
    plain = 0
    for annotation in annotations:
        kind = kind_of(annotation)
        adapter = TypeAdapter(annotation)
        for value in SAMPLES:
            decided = accepts(kind, value)
            if not kind:
                assert decided is None
                continue
            try:
                adapter.validate_python(value, strict=True)
            except ValidationError:
                strict = False
            else:
                strict = True
            assert decided is strict, (annotation, kind, value)
        plain += bool(kind)
    assert plain > 100
