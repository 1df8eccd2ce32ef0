"""Calling Close by catalog endpoint: one protocol, one result reader, one cursor walker.

The typed accessors (``client.leads``...) and the LangChain tools both send through
``Caller.call`` (``CloseClient.call``), so a path, its parameters and its paging are built
in one place:

- ``path_of``: the concrete path of a call, path parameters checked and quoted;
- ``read``: an answer as the endpoint's result or item model; an answer that does not fit
  raises ``ResponseFormatError`` naming method, path and field, never pydantic's error;
- ``one_page`` and ``walk``: one walker for the catalog's three paging styles, which differ
  only in where the position travels and how the next one is read from a page:
  ``offset`` (query ``_skip``, advanced by the items a page held while ``has_more``),
  ``cursor`` (Event Log: query ``_cursor`` -> ``cursor_next``) and ``search``
  (``/data/search/``: body ``cursor`` -> response ``cursor``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

from closeguard.tools.catalog import Endpoint
from closeguard.tools.errors import InvalidArguments, PagingLimitExceeded, ResponseFormatError

if TYPE_CHECKING:
    from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound="BaseModel")
Json = dict[str, Any]

__all__ = ["Caller", "Json", "Paging", "one_page", "path_of", "read", "walk"]


class Caller(Protocol):
    """Send one catalog endpoint (an ``Endpoint`` or its name); the decoded JSON answer."""

    async def call(
        self,
        endpoint: Endpoint | str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any: ...


def path_of(ep: Endpoint, path_params: Mapping[str, str] | None) -> str:
    """``ep``'s path with its parameters filled in; each must be one non-empty segment."""
    given = dict(path_params or {})
    missing = [p for p in ep.path_params if not str(given.get(p) or "").strip()]
    if missing:
        raise InvalidArguments(
            f"{ep.name}: missing path parameter(s) {', '.join(missing)}", operation=ep.name
        )
    odd = [p for p in ep.path_params if "/" in str(given[p]) or str(given[p]) in (".", "..")]
    if odd:
        raise InvalidArguments(
            f"{ep.name}: path parameter(s) {', '.join(odd)} must be a Close id, not a path",
            operation=ep.name,
        )
    return ep.format_path(**{p: quote(str(given[p]), safe="") for p in ep.path_params})


def read(
    model: type[ModelT],
    value: Any,
    ep: Endpoint,
    path: str,
    *,
    raw: Any = None,
    at: tuple[str | int, ...] = (),
) -> ModelT:
    """``value`` (found at ``at`` inside the answer ``raw``) as ``model``."""
    try:
        return model.model_validate(value)
    except Exception as exc:
        from pydantic import ValidationError  # loaded with ``model``: imported only here

        if not isinstance(exc, ValidationError):
            raise
        errors = exc.errors(include_url=False)
        first = errors[0]
        field = ".".join(str(p) for p in (*at, *first.get("loc", ()))) or None
        raise ResponseFormatError(
            f"{ep.method} {path}: Close's answer does not fit {model.__name__} at "
            f"{field or 'the top level'} ({first.get('msg', 'invalid')}, got "
            f"{_short(first.get('input'))}); the call itself went through",
            method=ep.method,
            path=path,
            raw=value if raw is None else raw,
            field=field,
            errors=list(errors),
        ) from exc


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Paging:
    """One paging style: where the position travels and how a page gives the next one."""

    key: str
    in_body: bool
    start: Any
    next: Callable[[Json, Any], Any]


def _next_skip(page: Json, skip: Any) -> int | None:
    held = len(page.get("data") or [])
    return int(skip or 0) + held if page.get("has_more") and held else None


STYLES: dict[str, Paging] = {
    "offset": Paging("_skip", in_body=False, start=0, next=_next_skip),
    "cursor": Paging("_cursor", in_body=False, start=None, next=lambda p, _: p.get("cursor_next")),
    "search": Paging("cursor", in_body=True, start=None, next=lambda p, _: p.get("cursor")),
}


def clamp(wanted: int | None, cap: int | None) -> int | None:
    """A page size: ``wanted`` (at least 1) capped at ``cap``, else ``cap``."""
    if wanted is None:
        return cap
    if wanted < 1:
        raise ValueError("page size must be at least 1")
    return min(wanted, cap) if cap is not None else wanted


def _check_skip(ep: Endpoint, skip: Any) -> None:
    if ep.max_skip is not None and int(skip or 0) > ep.max_skip:
        raise PagingLimitExceeded(
            f"{ep.name}: the next page starts at _skip={skip}, past Close's maximum of "
            f"{ep.max_skip} for this list; narrow the query (for example by a date range)",
            operation=ep.name,
            skip=int(skip),
            max_skip=ep.max_skip,
        )


async def one_page(caller: Caller, ep: Endpoint, args: Json, *, limit: int | None = None) -> Json:
    """One page of a list endpoint, checked against its page model (``ep.result_model``).

    ``args`` are the query (or, for search, the body) with the position under the style's
    key; ``limit`` (else ``args["_limit"]``) is capped at the endpoint's maximum. A plain
    list (statuses, pipelines) reads as a single offset page.
    """
    style = STYLES[ep.paging or "offset"]
    sent = {k: v for k, v in args.items() if v is not None}
    size = clamp(limit if limit is not None else sent.get("_limit"), ep.max_limit)
    if size is not None:
        sent["_limit"] = size
    _check_skip(ep, sent.get("_skip"))
    if style.in_body:
        raw = await caller.call(ep, json=sent)
    else:
        raw = await caller.call(ep, params=sent)
    read(ep.result_model, raw, ep, ep.path)
    return dict(raw)


async def walk(
    caller: Caller,
    ep: Endpoint,
    args: Json,
    page_size: int | None = None,
    model: type[ModelT] | None = None,
) -> AsyncIterator[Any]:
    """Every item of a paged endpoint, each once, as ``model`` (else the raw dict).

    Ends when a page says there is no more, or a cursor comes back that was already used
    (a server that loops must not make the walk endless).
    """
    style = STYLES[ep.paging or "offset"]
    position = args.get(style.key, style.start)
    seen: set[Any] = set()
    while True:
        raw = await one_page(caller, ep, {**args, style.key: position}, limit=page_size)
        for i, item in enumerate(raw.get("data") or []):
            yield item if model is None else read(model, item, ep, ep.path, raw=raw, at=("data", i))
        position = style.next(raw, position)
        if position is None or position in seen:
            return
        seen.add(position)
