"""Answers Close changed under us: new fields and values parse, wrong types raise our error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from closeguard.tools.errors import ResponseFormatError


def returning(body: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    return handler


async def test_new_fields_and_new_enum_values_are_read(make_client: Any) -> None:
    drifted = {
        "id": "oppo_1",
        "status_type": "paused",
        "value_period": "weekly",
        "brand_new_field": {"nested": [1, 2]},
        "custom.cf_x": "kept",
    }
    opportunity = await make_client(returning(drifted)).opportunities.get("oppo_1")
    assert (opportunity.status_type, opportunity.value_period) == ("paused", "weekly")
    assert opportunity.model_extra and opportunity.model_extra["brand_new_field"]
    assert opportunity.custom == {"cf_x": "kept"}
    event = await make_client(returning({"id": "ev_1"})).events.get("ev_1")
    assert event.action is None


async def test_a_wrong_type_names_method_path_and_field_and_keeps_the_json(
    make_client: Any,
) -> None:
    body = {"id": "lead_1", "name": "Acme", "contacts": "none"}
    with pytest.raises(ResponseFormatError) as info:
        await make_client(returning(body)).leads.get("lead_1")
    error = info.value
    assert not isinstance(error, ValidationError)
    assert isinstance(error.__cause__, ValidationError)
    assert (error.method, error.path, error.field) == ("GET", "/lead/lead_1/", "contacts")
    assert error.raw == body
    assert "GET /lead/lead_1/" in str(error) and "contacts" in str(error)


async def test_a_bad_item_in_a_page_is_named_by_its_position(make_client: Any) -> None:
    page = {
        "data": [{"id": "lead_1"}, {"id": "lead_2", "contacts": [{"id": 7}]}],
        "has_more": False,
    }
    client = make_client(returning(page))
    with pytest.raises(ResponseFormatError) as listed:
        await client.leads.list()
    assert listed.value.field == "data.1.contacts.0.id"
    assert listed.value.raw == page
    with pytest.raises(ResponseFormatError) as walked:
        _ = [lead async for lead in client.leads.iter()]
    assert walked.value.field == "data.1.contacts.0.id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"id": "lead_1"}], None),
        ({"data": "none", "has_more": False}, "data"),
        ({"data": [], "has_more": "perhaps"}, "has_more"),
    ],
)
async def test_a_page_of_the_wrong_shape(make_client: Any, body: Any, field: str | None) -> None:
    with pytest.raises(ResponseFormatError) as info:
        await make_client(returning(body)).leads.list()
    assert info.value.field == field
    assert info.value.path == "/lead/"


async def test_an_event_cursor_of_the_wrong_type(make_client: Any) -> None:
    with pytest.raises(ResponseFormatError) as info:
        _ = [e async for e in make_client(returning({"data": [], "cursor_next": 5})).events.iter()]
    assert info.value.field == "cursor_next"
