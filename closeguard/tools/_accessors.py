"""Typed resource accessors of ``CloseClient`` (``client.leads``, ``client.tasks``...).

Every method looks its endpoint up in the catalog (``BY_NAME``) when it runs, validates its
arguments with the endpoint's query/body model before anything is sent (a misspelt field
raises ``InvalidArguments``, also a ``ValueError``), and parses the answer into the
endpoint's result or item model. Paging follows the endpoint's ``paging`` kind:

- ``offset``: ``_skip``/``_limit`` until ``has_more`` is false, ``_skip`` advanced by what
  each page actually held, ``_limit`` never above ``max_limit``, ``_skip`` never past
  ``max_skip`` (``PagingLimitExceeded`` instead);
- ``cursor`` (Event Log): ``_cursor`` -> ``cursor_next``;
- ``search`` (``/data/search/``): body ``cursor`` -> response ``cursor`` until null.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError

from closeguard.tools import models as m
from closeguard.tools.catalog import BY_NAME, Endpoint
from closeguard.tools.errors import InvalidArguments, PagingLimitExceeded

ModelT = TypeVar("ModelT", bound=BaseModel)
CreateT = TypeVar("CreateT", bound=BaseModel)
UpdateT = TypeVar("UpdateT", bound=BaseModel)
ArgsT = TypeVar("ArgsT", bound=BaseModel)
ItemT = TypeVar("ItemT")

Json = dict[str, Any]


class Caller(Protocol):
    """What accessors need of the client: send one catalog endpoint, get decoded JSON."""

    async def call(
        self,
        endpoint: Endpoint,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any: ...


@dataclass(frozen=True)
class PageOf(Generic[ItemT]):
    """One page of a list, items parsed. ``cursor`` is the next cursor for cursor paging."""

    data: builtins.list[ItemT]
    has_more: bool
    total_results: int | None = None
    cursor: str | None = None
    raw: Json = field(default_factory=dict, repr=False)


# -- argument validation -------------------------------------------------------------------


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "arguments"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def validate(model: type[ArgsT], data: BaseModel | Mapping[str, Any], operation: str) -> ArgsT:
    """``data`` as ``model``; a dict (or another model) is validated, refusing typos."""
    if isinstance(data, model):
        return data
    raw = (
        data.model_dump(by_alias=True, exclude_unset=True)
        if isinstance(data, BaseModel)
        else dict(data)
    )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidArguments(
            f"{operation}: invalid arguments: {_describe(exc)}",
            operation=operation,
            errors=list(exc.errors(include_url=False)),
        ) from exc


def body_of(ep: Endpoint, data: BaseModel | Mapping[str, Any]) -> Json:
    """The JSON body for ``ep``, validated through its ``body_model``."""
    if ep.body_model is None:
        return dict(data) if isinstance(data, Mapping) else data.model_dump(mode="json")
    args = validate(ep.body_model, data, ep.name)
    if isinstance(args, m.Arguments):
        return args.to_body()
    return args.model_dump(mode="json", by_alias=True, exclude_unset=True)


def query_of(ep: Endpoint, filters: Mapping[str, Any]) -> Json:
    """Query parameters for ``ep``, validated through its ``query_model`` (Close's names)."""
    present = {k: v for k, v in filters.items() if v is not None}
    if ep.query_model is None:
        if present:
            raise InvalidArguments(
                f"{ep.name}: takes no query parameters (got {', '.join(sorted(present))})",
                operation=ep.name,
            )
        return {}
    args = validate(ep.query_model, present, ep.name)
    return args.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse(model: type[ModelT], data: Any) -> ModelT:
    return model.model_validate(data)


def _clamp(wanted: int | None, cap: int | None) -> int | None:
    if wanted is None:
        return cap
    if wanted < 1:
        raise ValueError("page size must be at least 1")
    return min(wanted, cap) if cap is not None else wanted


# -- paging walkers (raw dicts) ------------------------------------------------------------


async def offset_page(caller: Caller, ep: Endpoint, params: Json) -> Json:
    limit = _clamp(params.get("_limit"), ep.max_limit)
    query = {**params}
    if limit is not None:
        query["_limit"] = limit
    skip = int(query.get("_skip", 0) or 0)
    _check_skip(ep, skip)
    return cast(Json, await caller.call(ep, params=query))


def _check_skip(ep: Endpoint, skip: int) -> None:
    if ep.max_skip is not None and skip > ep.max_skip:
        raise PagingLimitExceeded(
            f"{ep.name}: the next page starts at _skip={skip}, past Close's maximum of "
            f"{ep.max_skip} for this list; narrow the query (for example by a date range)",
            operation=ep.name,
            skip=skip,
            max_skip=ep.max_skip,
        )


async def walk_offset(
    caller: Caller, ep: Endpoint, params: Json, page_size: int | None
) -> AsyncIterator[Json]:
    """Every item of an offset list, each exactly once."""
    query = {k: v for k, v in params.items() if k not in ("_skip", "_limit")}
    limit = _clamp(page_size if page_size is not None else params.get("_limit"), ep.max_limit)
    if limit is not None:
        query["_limit"] = limit
    skip = int(params.get("_skip", 0) or 0)
    while True:
        _check_skip(ep, skip)
        page = await caller.call(ep, params={**query, "_skip": skip})
        data = page.get("data") or []
        for item in data:
            yield item
        if not page.get("has_more") or not data:
            return
        skip += len(data)


async def walk_event_cursor(
    caller: Caller, ep: Endpoint, params: Json, page_size: int | None
) -> AsyncIterator[Json]:
    """Every Event Log entry matching ``params``, newest first, following ``cursor_next``."""
    query = {k: v for k, v in params.items() if k not in ("_cursor", "_limit")}
    limit = _clamp(page_size if page_size is not None else params.get("_limit"), ep.max_limit)
    if limit is not None:
        query["_limit"] = limit
    cursor: str | None = params.get("_cursor")
    seen: set[str] = set()
    while True:
        page = await caller.call(ep, params={**query, **({"_cursor": cursor} if cursor else {})})
        for item in page.get("data") or []:
            yield item
        cursor = page.get("cursor_next")
        if not cursor or cursor in seen:
            return
        seen.add(cursor)


async def walk_search(
    caller: Caller, ep: Endpoint, body: Json, page_size: int | None
) -> AsyncIterator[Json]:
    """Every result of an Advanced Filtering query, following the response ``cursor``."""
    base = {k: v for k, v in body.items() if k not in ("cursor", "_limit")}
    limit = _clamp(page_size if page_size is not None else body.get("_limit"), ep.max_limit)
    if limit is not None:
        base["_limit"] = limit
    cursor: str | None = body.get("cursor")
    seen: set[str] = set()
    while True:
        page = await caller.call(ep, json={**base, **({"cursor": cursor} if cursor else {})})
        for item in page.get("data") or []:
            yield item
        cursor = page.get("cursor")
        if not cursor or cursor in seen:
            return
        seen.add(cursor)


# -- accessors -----------------------------------------------------------------------------


class _Accessor:
    def __init__(self, caller: Caller, resource: str) -> None:
        self._caller = caller
        self._resource = resource

    def _ep(self, action: str) -> Endpoint:
        return BY_NAME[f"{self._resource}.{action}"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._resource}>"


class ListResource(_Accessor, Generic[ModelT]):
    """``list`` (one page) and ``iter`` (every item) of an offset-paged resource."""

    def _item_model(self, ep: Endpoint) -> type[ModelT]:
        return cast(type[ModelT], ep.item_model or ep.result_model)

    async def list(
        self,
        *,
        limit: int | None = None,
        skip: int | None = None,
        fields: str | None = None,
        **filters: Any,
    ) -> PageOf[ModelT]:
        """One page; ``limit`` is capped at the endpoint's maximum, ``filters`` validated."""
        ep = self._ep("list")
        params = query_of(ep, {"_limit": limit, "_skip": skip, "_fields": fields, **filters})
        raw = await offset_page(self._caller, ep, params)
        model = self._item_model(ep)
        return PageOf(
            data=[parse(model, item) for item in raw.get("data") or []],
            has_more=bool(raw.get("has_more")),
            total_results=raw.get("total_results"),
            raw=raw,
        )

    async def iter(
        self, *, page_size: int | None = None, fields: str | None = None, **filters: Any
    ) -> AsyncIterator[ModelT]:
        """Every matching object, each once, paging as the catalog says."""
        ep = self._ep("list")
        params = query_of(ep, {"_fields": fields, **filters})
        model = self._item_model(ep)
        async for item in walk_offset(self._caller, ep, params, page_size):
            yield parse(model, item)


class ReadResource(ListResource[ModelT]):
    """``get`` by id, besides ``list`` and ``iter``."""

    async def get(self, id: str, *, fields: str | None = None) -> ModelT:
        ep = self._ep("get")
        params = query_of(ep, {"_fields": fields})
        raw = await self._caller.call(ep, path_params={"id": id}, params=params)
        return parse(cast(type[ModelT], ep.result_model), raw)


class CrudResource(ReadResource[ModelT], Generic[ModelT, CreateT, UpdateT]):
    """``create``, ``update`` (only the fields sent change) and ``delete`` too."""

    async def create(self, data: CreateT | Mapping[str, Any]) -> ModelT:
        ep = self._ep("create")
        raw = await self._caller.call(ep, json=body_of(ep, data))
        return parse(cast(type[ModelT], ep.result_model), raw)

    async def update(self, id: str, data: UpdateT | Mapping[str, Any]) -> ModelT:
        ep = self._ep("update")
        raw = await self._caller.call(ep, path_params={"id": id}, json=body_of(ep, data))
        return parse(cast(type[ModelT], ep.result_model), raw)

    async def delete(self, id: str) -> None:
        await self._caller.call(self._ep("delete"), path_params={"id": id})


class Leads(CrudResource[m.Lead, m.LeadCreate, m.LeadUpdate]):
    """``client.leads``."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "lead")

    async def merge(self, source: str, destination: str) -> m.Lead:
        """Merge ``source`` into ``destination``; the source disappears."""
        ep = self._ep("merge")
        body = body_of(ep, {"source": source, "destination": destination})
        return parse(m.Lead, await self._caller.call(ep, json=body))


class Tasks(CrudResource[m.Task, m.TaskCreate, m.TaskUpdate]):
    """``client.tasks``."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "task")

    async def bulk_update(
        self,
        filter: m.TaskBulkFilter | Mapping[str, Any],
        changes: m.TaskUpdate | Mapping[str, Any],
    ) -> m.Page:
        """Apply ``changes`` to every task matching ``filter`` (refused when it is empty)."""
        ep = self._ep("bulk_update")
        params = validate(m.TaskBulkFilter, filter, ep.name).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        if not params:
            raise InvalidArguments(
                f"{ep.name}: an empty filter would update every task; give at least one filter",
                operation=ep.name,
            )
        raw = await self._caller.call(ep, params=params, json=body_of(ep, changes))
        return parse(m.Page, raw or {})


class ActivityList(ListResource[m.Activity]):
    """``client.activities``: every activity type, list and iter only."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "activity")


class CustomFields:
    """``client.custom_fields.lead`` / ``.contact`` / ``.opportunity`` / ``.activity``."""

    def __init__(self, caller: Caller) -> None:
        field_crud = CrudResource[m.CustomField, m.CustomFieldCreate, m.CustomFieldUpdate]
        self.lead = field_crud(caller, "custom_field.lead")
        self.contact = field_crud(caller, "custom_field.contact")
        self.opportunity = field_crud(caller, "custom_field.opportunity")
        self.activity = field_crud(caller, "custom_field.activity")


class Users(ReadResource[m.User]):
    """``client.users``: ``me()`` plus list/iter/get."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "user")

    async def me(self, *, fields: str | None = None) -> m.User:
        ep = self._ep("me")
        raw = await self._caller.call(ep, params=query_of(ep, {"_fields": fields}))
        return parse(m.User, raw)


class OrganizationAccessor(_Accessor):
    """``client.organization``: get and update (an update affects every member)."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "organization")

    async def get(self, id: str, *, fields: str | None = None) -> m.Organization:
        ep = self._ep("get")
        raw = await self._caller.call(
            ep, path_params={"id": id}, params=query_of(ep, {"_fields": fields})
        )
        return parse(m.Organization, raw)

    async def update(
        self, id: str, data: m.OrganizationUpdate | Mapping[str, Any]
    ) -> m.Organization:
        ep = self._ep("update")
        raw = await self._caller.call(ep, path_params={"id": id}, json=body_of(ep, data))
        return parse(m.Organization, raw)


class Statuses(_Accessor):
    """``client.statuses``: the lead and opportunity status lists."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "status")

    async def lead(self) -> builtins.list[m.LeadStatus]:
        raw = await self._caller.call(self._ep("lead.list"))
        return [parse(m.LeadStatus, item) for item in raw.get("data") or []]

    async def opportunity(self) -> builtins.list[m.OpportunityStatus]:
        raw = await self._caller.call(self._ep("opportunity.list"))
        return [parse(m.OpportunityStatus, item) for item in raw.get("data") or []]


class Pipelines(_Accessor):
    """``client.pipelines``."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "pipeline")

    async def list(self) -> builtins.list[m.Pipeline]:
        raw = await self._caller.call(self._ep("list"))
        return [parse(m.Pipeline, item) for item in raw.get("data") or []]


class Events(_Accessor):
    """``client.events``: the Event Log (30 days, newest first, cursor paged, 50 a page)."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "event")

    async def get(self, id: str) -> m.Event:
        raw = await self._caller.call(self._ep("get"), path_params={"id": id})
        return parse(m.Event, raw)

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> PageOf[m.Event]:
        """One page; ``PageOf.cursor`` is ``cursor_next`` (None at the end)."""
        ep = self._ep("list")
        params = query_of(ep, {"_cursor": cursor, **filters})
        page_limit = _clamp(limit, ep.max_limit)
        if page_limit is not None:
            params["_limit"] = page_limit
        raw = await self._caller.call(ep, params=params)
        nxt = raw.get("cursor_next")
        return PageOf(
            data=[parse(m.Event, item) for item in raw.get("data") or []],
            has_more=bool(nxt),
            cursor=nxt,
            raw=raw,
        )

    async def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[m.Event]:
        """Every event matching ``filters`` (``object_type``, ``date_updated__gt``...)."""
        ep = self._ep("list")
        params = query_of(ep, filters)
        async for item in walk_event_cursor(self._caller, ep, params, page_size):
            yield parse(m.Event, item)


class Search(_Accessor):
    """``client.search``: Advanced Filtering (``POST /data/search/``, a read).

    Results are plain dicts: a query may return leads or contacts, and ``_fields`` decides
    which keys are present, so no single model fits.
    """

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "data")

    def _body(
        self,
        query: Mapping[str, Any],
        fields: Mapping[str, Any] | None,
        sort: builtins.list[dict[str, Any]] | None,
        limit: int | None,
        cursor: str | None,
    ) -> Json:
        given = {"query": query, "_fields": fields, "sort": sort, "_limit": limit, "cursor": cursor}
        return body_of(self._ep("search"), {k: v for k, v in given.items() if v is not None})

    async def page(
        self,
        query: Mapping[str, Any],
        *,
        fields: Mapping[str, Any] | None = None,
        sort: builtins.list[dict[str, Any]] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> PageOf[Json]:
        """One page of results; pass ``PageOf.cursor`` back as ``cursor`` for the next."""
        ep = self._ep("search")
        body = self._body(query, fields, sort, _clamp(limit, ep.max_limit), cursor)
        raw = await self._caller.call(ep, json=body)
        nxt = raw.get("cursor")
        return PageOf(data=list(raw.get("data") or []), has_more=bool(nxt), cursor=nxt, raw=raw)

    async def iter(
        self,
        query: Mapping[str, Any],
        *,
        fields: Mapping[str, Any] | None = None,
        sort: builtins.list[dict[str, Any]] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Json]:
        """Every result of ``query``, following the cursor until Close returns null."""
        ep = self._ep("search")
        body = self._body(query, fields, sort, None, None)
        async for item in walk_search(self._caller, ep, body, page_size):
            yield item
