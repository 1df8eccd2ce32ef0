"""Typed resource accessors of ``CloseClient`` (``client.leads``, ``client.tasks``...).

Each method is a thin call onto ``Caller.call`` (``CloseClient.call``) for one catalog
endpoint: it validates its arguments with the endpoint's query/body model before anything
is sent (a misspelt field raises ``InvalidArguments``, also a ``ValueError``), and reads
the answer as the endpoint's result or item model with ``calls.read`` (an answer that does
not fit raises ``ResponseFormatError``). Lists page through the one walker of ``calls``.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from closeguard.tools import models as m
from closeguard.tools.calls import Caller, Json, clamp, one_page, path_of, read, walk
from closeguard.tools.catalog import BY_NAME, Endpoint
from closeguard.tools.errors import InvalidArguments

ModelT = TypeVar("ModelT", bound=BaseModel)
CreateT = TypeVar("CreateT", bound=BaseModel)
UpdateT = TypeVar("UpdateT", bound=BaseModel)
ArgsT = TypeVar("ArgsT", bound=BaseModel)
ItemT = TypeVar("ItemT")


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


# -- accessors -----------------------------------------------------------------------------


class _Accessor:
    def __init__(self, caller: Caller, resource: str) -> None:
        self._caller = caller
        self._resource = resource

    def _ep(self, action: str) -> Endpoint:
        return BY_NAME[f"{self._resource}.{action}"]

    async def _call(
        self,
        ep: Endpoint,
        model: type[ModelT],
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> ModelT:
        """Send ``ep``; its answer as ``model``."""
        raw = await self._caller.call(ep, path_params=path_params, params=params, json=json)
        return read(model, raw, ep, path_of(ep, path_params))

    async def _items(
        self, ep: Endpoint, model: type[ModelT], args: Json, limit: int | None = None
    ) -> tuple[builtins.list[ModelT], Json]:
        """One page of ``ep``: its items as ``model``, and the raw answer."""
        raw = await one_page(self._caller, ep, args, limit=limit)
        items = [
            read(model, item, ep, ep.path, raw=raw, at=("data", i))
            for i, item in enumerate(raw.get("data") or [])
        ]
        return items, raw

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
        args = query_of(ep, {"_limit": limit, "_skip": skip, "_fields": fields, **filters})
        items, raw = await self._items(ep, self._item_model(ep), args)
        return PageOf(
            data=items,
            has_more=bool(raw.get("has_more")),
            total_results=raw.get("total_results"),
            raw=raw,
        )

    async def iter(
        self, *, page_size: int | None = None, fields: str | None = None, **filters: Any
    ) -> AsyncIterator[ModelT]:
        """Every matching object, each once, paging as the catalog says."""
        ep = self._ep("list")
        args = query_of(ep, {"_fields": fields, **filters})
        async for item in walk(self._caller, ep, args, page_size, self._item_model(ep)):
            yield item


class ReadResource(ListResource[ModelT]):
    """``get`` by id, besides ``list`` and ``iter``."""

    async def get(self, id: str, *, fields: str | None = None) -> ModelT:
        ep = self._ep("get")
        model = cast(type[ModelT], ep.result_model)
        params = query_of(ep, {"_fields": fields})
        return await self._call(ep, model, path_params={"id": id}, params=params)


class CrudResource(ReadResource[ModelT], Generic[ModelT, CreateT, UpdateT]):
    """``create``, ``update`` (only the fields sent change) and ``delete`` too."""

    async def create(self, data: CreateT | Mapping[str, Any]) -> ModelT:
        ep = self._ep("create")
        return await self._call(ep, cast(type[ModelT], ep.result_model), json=body_of(ep, data))

    async def update(self, id: str, data: UpdateT | Mapping[str, Any]) -> ModelT:
        ep = self._ep("update")
        model = cast(type[ModelT], ep.result_model)
        return await self._call(ep, model, path_params={"id": id}, json=body_of(ep, data))

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
        return await self._call(ep, m.Lead, json=body)


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
        return await self._call(ep, m.Page, params=params, json=body_of(ep, changes))


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
        return await self._call(ep, m.User, params=query_of(ep, {"_fields": fields}))


class OrganizationAccessor(_Accessor):
    """``client.organization``: get and update (an update affects every member)."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "organization")

    async def get(self, id: str, *, fields: str | None = None) -> m.Organization:
        ep = self._ep("get")
        params = query_of(ep, {"_fields": fields})
        return await self._call(ep, m.Organization, path_params={"id": id}, params=params)

    async def update(
        self, id: str, data: m.OrganizationUpdate | Mapping[str, Any]
    ) -> m.Organization:
        ep = self._ep("update")
        body = body_of(ep, data)
        return await self._call(ep, m.Organization, path_params={"id": id}, json=body)


class Statuses(_Accessor):
    """``client.statuses``: the lead and opportunity status lists."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "status")

    async def lead(self) -> builtins.list[m.LeadStatus]:
        return (await self._items(self._ep("lead.list"), m.LeadStatus, {}))[0]

    async def opportunity(self) -> builtins.list[m.OpportunityStatus]:
        return (await self._items(self._ep("opportunity.list"), m.OpportunityStatus, {}))[0]


class Pipelines(_Accessor):
    """``client.pipelines``."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "pipeline")

    async def list(self) -> builtins.list[m.Pipeline]:
        return (await self._items(self._ep("list"), m.Pipeline, {}))[0]


class Events(_Accessor):
    """``client.events``: the Event Log (30 days, newest first, cursor paged, 50 a page)."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, "event")

    async def get(self, id: str) -> m.Event:
        return await self._call(self._ep("get"), m.Event, path_params={"id": id})

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> PageOf[m.Event]:
        """One page; ``PageOf.cursor`` is ``cursor_next`` (None at the end)."""
        ep = self._ep("list")
        args = query_of(ep, {"_cursor": cursor, **filters})
        items, raw = await self._items(ep, m.Event, args, limit=limit)
        nxt = raw.get("cursor_next")
        return PageOf(data=items, has_more=bool(nxt), cursor=nxt, raw=raw)

    async def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[m.Event]:
        """Every event matching ``filters`` (``object_type``, ``date_updated__gt``...)."""
        ep = self._ep("list")
        async for event in walk(self._caller, ep, query_of(ep, filters), page_size, m.Event):
            yield event


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
        body = self._body(query, fields, sort, clamp(limit, ep.max_limit), cursor)
        raw = await one_page(self._caller, ep, body)
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
        async for item in walk(self._caller, ep, body, page_size):
            yield item
