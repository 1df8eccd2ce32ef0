"""Properties of the Advanced Filtering interpreter (``POST /data/search/``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.simulator import Simulator

SIM = Simulator(seed=4, leads=14, rate_limits=None)  # searches never write: shared
LEAD_IDS = sorted(SIM.state["leads"])
LABELS = sorted({lead["status_label"] for lead in SIM.state["leads"].values()})
MAX = 200
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _regular(name: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "field_condition",
        "field": {"type": "regular_field", "field_name": name},
        "condition": condition,
    }


_LETTERS = st.text("aeiourstnl", min_size=1, max_size=2)
LEAVES = st.one_of(
    st.builds(lambda i: {"type": "id", "value": i}, st.sampled_from([*LEAD_IDS, "lead_none"])),
    st.builds(lambda v: {"type": "text", "value": v}, _LETTERS),
    st.builds(lambda v: _regular("name", {"type": "text", "value": v}), _LETTERS),
    st.builds(
        lambda vs: _regular("status_label", {"type": "term", "values": vs}),
        st.lists(st.sampled_from(LABELS), max_size=2),
    ),
    st.builds(lambda n: _regular(n, {"type": "exists"}), st.sampled_from(["url", "description"])),
)
QUERIES = st.recursive(
    LEAVES,
    lambda kids: st.one_of(
        st.builds(
            lambda qs: {"type": "and", "queries": qs}, st.lists(kids, min_size=1, max_size=3)
        ),
        st.builds(lambda qs: {"type": "or", "queries": qs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda q: {"type": "negate", "query": q}, kids),
    ),
    max_leaves=8,
)
SORTS = st.lists(
    st.fixed_dictionaries(
        {
            "field": st.builds(
                lambda n: {"field_name": n}, st.sampled_from(["name", "status_label", "url"])
            ),
            "direction": st.sampled_from(["asc", "desc"]),
        }
    ),
    max_size=2,
)


def _run(go: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with SIM.http_client() as http:
            return await go(http)

    return asyncio.run(main())


async def _ids(http: httpx.AsyncClient, query: Any, sort: Any = (), limit: int = MAX) -> list[str]:
    """Every matching id in order, following the cursor."""
    found: list[str] = []
    body: dict[str, Any] = {"query": query, "sort": list(sort), "_limit": limit}
    while True:
        r = await http.post("/data/search/", json=body)
        assert r.status_code == 200, r.text
        found += [d["id"] for d in r.json()["data"]]
        if not r.json()["cursor"]:
            return found
        body["cursor"] = r.json()["cursor"]


@SETTINGS
@given(a=QUERIES, b=QUERIES)
def test_and_or_negate_agree_with_set_algebra(a: Any, b: Any) -> None:
    async def go(http: httpx.AsyncClient) -> None:
        ids_a, ids_b = set(await _ids(http, a)), set(await _ids(http, b))
        both = await _ids(http, {"type": "and", "queries": [a, b]})
        either = await _ids(http, {"type": "or", "queries": [a, b]})
        neither = await _ids(http, {"type": "negate", "query": a})
        assert set(both) == ids_a & ids_b
        assert set(either) == ids_a | ids_b
        assert set(neither) == set(LEAD_IDS) - ids_a

    _run(go)


@SETTINGS
@given(query=QUERIES, sort=SORTS, limit=st.integers(1, 5))
def test_paging_through_the_cursor_yields_the_unpaged_result(
    query: Any, sort: Any, limit: int
) -> None:
    async def go(http: httpx.AsyncClient) -> None:
        assert await _ids(http, query, sort, limit) == await _ids(http, query, sort)

    _run(go)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=6,
)
_NODE_TYPES = ["and", "or", "negate", "id", "text", "field_condition", "object_type", "fuzzy"]
ANY_TREE = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(_NODE_TYPES)},
        optional={"value": _JSON, "object_type": _JSON, "field": _JSON, "condition": _JSON},
    )
    | _JSON,
    lambda kids: st.fixed_dictionaries(
        {"type": st.sampled_from(_NODE_TYPES)},
        optional={"queries": st.lists(kids, max_size=3) | kids, "query": kids},
    ),
    max_leaves=8,
)


@SETTINGS
@given(query=ANY_TREE, sort=_JSON, cursor=st.none() | st.text(max_size=8))
def test_random_query_trees_never_5xx(query: Any, sort: Any, cursor: str | None) -> None:
    async def go(http: httpx.AsyncClient) -> None:
        body = {"query": query, "sort": sort, "cursor": cursor}
        r = await http.post("/data/search/", json=body)
        assert r.status_code in (200, 400), r.text
        assert "error" in r.json() or "data" in r.json()

    _run(go)


def test_a_search_cursor_is_bound_to_its_query_and_sort() -> None:
    query = {"type": "negate", "query": {"type": "id", "value": "lead_none"}}
    sort = [{"field": {"field_name": "name"}, "direction": "asc"}]

    async def go(http: httpx.AsyncClient) -> None:
        first = await http.post("/data/search/", json={"query": query, "sort": sort, "_limit": 2})
        cursor = first.json()["cursor"]
        assert cursor
        same = {"query": query, "sort": sort, "_limit": 5, "cursor": cursor}
        assert (await http.post("/data/search/", json=same)).status_code == 200
        other_query = {**same, "query": {"type": "text", "value": "a"}}
        other_sort = {**same, "sort": [{"field": {"field_name": "name"}, "direction": "desc"}]}
        for body in (other_query, other_sort):
            r = await http.post("/data/search/", json=body)
            assert r.status_code == 400
            assert "issued for another query or sort" in r.json()["field-errors"]["cursor"]

    _run(go)
