"""``CloseClient``: the one async path from closeguard to Close (or the simulator).

Every request, typed (``client.leads.create(...)``) or raw (``client.request("GET",
"/lead/")``), goes through the same loop:

1. pacing: wait if the endpoint's rate group has run dry (``_pacing.Pacer``);
2. send through the httpx transport, wrapped by the guard (``TransportGuard``) when a
   policy is given, with ``request.extensions["closeguard"] = {"call_id", "attempt"}`` so
   the guard can tell retries of one logical call from new calls;
3. on 429 wait Close's precise ``rate_reset`` and resend (writes too: Close did not apply
   them); on 500/502/503/504 and connection failures retry reads, and PUTs that only set
   fields of one object (idempotent), with exponential backoff; resend other writes only
   when Close cannot have seen them (connection refused, pool timeout);
   a write that timed out after sending raises ``CloseConnectionError(request_sent=True)``;
4. on 401 with an OAuth refresh token, refresh once (one refresh for concurrent callers)
   and resend once;
5. anything else >= 400 raises the ``CloseAPIError`` subclass for its status, naming the
   method and path and Close's message, never a credential.

``CloseguardError`` raised by the transport (the guard's ``PolicyViolation``,
``ApprovalRequired``) propagates unchanged and is never retried.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json as jsonlib
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, lru_cache
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

import httpx

from closeguard.telemetry.metrics import record_rate_wait
from closeguard.tools import _accessors as acc
from closeguard.tools import models as m
from closeguard.tools._json import loads
from closeguard.tools._pacing import (
    DEFAULT_GROUP,
    Pacer,
    make_jitter,
    parse_rate_limit,
    rate_limit_wait,
)
from closeguard.tools.budget import RateBudget
from closeguard.tools.calls import path_of
from closeguard.tools.catalog import API_PREFIX, Endpoint, endpoint, find_endpoint
from closeguard.tools.clock import Clock, SystemClock
from closeguard.tools.errors import (
    BadRequest,
    CloseAPIError,
    CloseConnectionError,
    CloseguardError,
    ConfigError,
    InvalidArguments,
    RateLimited,
    ResponseFormatError,
    Unauthorized,
    UnknownEndpoint,
    error_class_for,
)
from closeguard.tools.settings import CLOSE_BASE_URL, Settings

DEFAULT_TOKEN_URL = "https://api.close.com/oauth2/token"
EXTENSION_KEY = "closeguard"
USER_AGENT = "closeguard/0.1"

AuthKind = Literal["api_key", "oauth"]
TokenCallback = Callable[["OAuthCredentials"], Awaitable[None] | None]

_RETRYABLE_READ_STATUS = frozenset({500, 502, 503, 504})


def _idempotent_update(
    method: str, endpoint: Endpoint | None, params: Mapping[str, Any] | None, json: Any
) -> bool:
    """A PUT that sets fields of one object (access ``write``): sent twice it leaves the
    same object, so a 5xx or a lost answer is retried like a read. Bulk and settings PUTs
    and an email update that sends are ``destructive`` and never resent blindly."""
    if method != "PUT" or endpoint is None:
        return False
    body = json if isinstance(json, Mapping) else None
    return endpoint.classify(body, params)[0] == "write"


# Raised before a byte of the request reached Close: safe to resend even a write.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transient failures after sending: resend reads only.
_TRANSIENT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@runtime_checkable
class TransportGuard(Protocol):
    """Wraps the client's transport so every request passes a check first (the guard).

    ``wrap`` returns the transport the client sends through. Per-call metadata arrives on
    each request as ``request.extensions["closeguard"]``: ``call_id`` (one per logical call,
    shared by its retries) and ``attempt`` (1, 2...). A ``CloseguardError`` the wrapper
    raises reaches the caller unchanged.
    """

    def wrap(
        self, transport: httpx.AsyncBaseTransport, *, actor: str | None, run_id: str | None
    ) -> httpx.AsyncBaseTransport: ...


@dataclass(frozen=True)
class OAuthCredentials:
    """An OAuth grant. Secrets are hidden from ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_url: str = DEFAULT_TOKEN_URL

    @property
    def can_refresh(self) -> bool:
        return bool(self.refresh_token)


@dataclass(frozen=True)
class RetrySettings:
    """How hard to try.

    ``max_attempts``: sends per logical call for transient failures (5xx on reads,
    connection errors); ``max_rate_limit_retries``: resends after 429s; backoff is
    ``backoff_base * 2**(n-1)`` capped at ``backoff_max``; every wait gets up to
    ``jitter * wait + jitter_seconds`` extra; a 429 asking for more than
    ``max_rate_limit_wait`` seconds raises ``RateLimited`` at once, and one asking for less
    than ``min_rate_limit_wait`` (a reset rounded to ``0`` at a window's edge) waits that
    long, so a retry never goes out at the very instant that was refused.
    """

    max_attempts: int = 4
    max_rate_limit_retries: int = 10
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.05
    jitter_seconds: float = 0.01
    default_rate_limit_wait: float = 1.0
    min_rate_limit_wait: float = 0.05
    max_rate_limit_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_rate_limit_retries < 0:
            raise ValueError("max_attempts must be >= 1 and max_rate_limit_retries >= 0")

    def backoff(self, failures: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(failures - 1, 0)))


def normalize_path(path: str) -> tuple[str, dict[str, str]]:
    """``"lead/lead_x"`` -> ``("/lead/lead_x/", {})``; a query string becomes params."""
    split = urlsplit(path)
    if split.scheme or split.netloc:
        raise ValueError(f"pass a path relative to the base URL, not a URL: {path!r}")
    rel = split.path if split.path.startswith("/") else "/" + split.path
    if rel == API_PREFIX or rel.startswith(API_PREFIX + "/"):
        rel = rel[len(API_PREFIX) :] or "/"
    if not rel.endswith("/"):
        rel += "/"
    if any(part in (".", "..") for part in rel.split("/")):
        raise ValueError(f"path may not contain '.' or '..' segments: {path!r}")
    return rel, dict(parse_qsl(split.query))


class CloseClient:
    """Async Close API client: typed accessors, paging, pacing, retries, one error tree.

    Use as ``async with CloseClient(...) as client:``. Credentials: ``api_key`` (HTTP Basic,
    blank password) or ``oauth`` (Bearer); when neither is passed they come from
    ``CLOSE_API_KEY`` (or ``CLOSE_OAUTH_*``) through ``Settings``, as does ``base_url``
    from ``CLOSE_BASE_URL``. ``transport`` replaces httpx's network transport (tests pass
    ``httpx.MockTransport``, the simulator ``httpx.ASGITransport``); ``policy`` wraps it.
    ``clock`` is the time pacing and retries wait on (``SystemClock`` by default; a
    ``FakeClock`` makes every wait free, as ``Simulator.client()`` does on fake time).
    ``budget`` (``tools.budget.RateBudget``) shares the rate windows with every other
    process using the same key, on top of this client's own pacing.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        oauth: OAuthCredentials | None = None,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetrySettings | None = None,
        policy: TransportGuard | None = None,
        actor: str | None = None,
        run_id: str | None = None,
        settings: Settings | None = None,
        on_token_refresh: TokenCallback | None = None,
        clock: Clock | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        if (api_key is None and oauth is None) or base_url is None:
            settings = settings or Settings()
            if api_key is None and oauth is None:
                api_key, oauth = _credentials_from(settings)
            base_url = base_url or settings.close_base_url
        if not api_key and oauth is None:
            raise ConfigError(
                "no Close credential: set CLOSE_API_KEY (or pass api_key= or oauth= to CloseClient)"
            )
        if oauth is not None and not oauth.access_token:
            raise ConfigError("OAuth credentials need an access_token")
        self._api_key = api_key if oauth is None else None
        self._oauth = oauth
        self._on_token_refresh = on_token_refresh
        self.base_url = base_url.rstrip("/") or CLOSE_BASE_URL
        self.actor = actor
        self.run_id = run_id
        self.retry = retry or RetrySettings()
        self.clock: Clock = clock or SystemClock()
        self._jitter = make_jitter(self.retry.jitter, self.retry.jitter_seconds, _JITTER_RNG)
        self._pacer = Pacer(clock=self.clock, jitter=self._jitter)
        self.budget = budget
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else _timeout_of(timeout)
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        outer = policy.wrap(self._inner, actor=actor, run_id=run_id) if policy else self._inner
        self._transport: httpx.AsyncBaseTransport = outer
        self._client: httpx.AsyncClient | None = None
        self._prefix = _prefix_for(self.base_url)
        self._extensions_timeout = self._timeout.as_dict()
        self._authorization_value = self._authorization().encode("ascii")
        self._refresh_lock = asyncio.Lock()

    # -- typed accessors (made on first use: a run's client uses a few of them) ----------------

    @cached_property
    def leads(self) -> acc.Leads:
        return acc.Leads(self)

    @cached_property
    def contacts(self) -> acc.CrudResource[m.Contact, m.ContactCreate, m.ContactUpdate]:
        return acc.CrudResource(self, "contact")

    @cached_property
    def opportunities(
        self,
    ) -> acc.CrudResource[m.Opportunity, m.OpportunityCreate, m.OpportunityUpdate]:
        return acc.CrudResource(self, "opportunity")

    @cached_property
    def activities(self) -> acc.ActivityList:
        return acc.ActivityList(self)

    @cached_property
    def notes(self) -> acc.CrudResource[m.NoteActivity, m.NoteCreate, m.NoteUpdate]:
        return acc.CrudResource(self, "activity.note")

    @cached_property
    def calls(self) -> acc.CrudResource[m.CallActivity, m.CallCreate, m.CallUpdate]:
        return acc.CrudResource(self, "activity.call")

    @cached_property
    def emails(self) -> acc.CrudResource[m.EmailActivity, m.EmailCreate, m.EmailUpdate]:
        return acc.CrudResource(self, "activity.email")

    @cached_property
    def tasks(self) -> acc.Tasks:
        return acc.Tasks(self)

    @cached_property
    def custom_fields(self) -> acc.CustomFields:
        return acc.CustomFields(self)

    @cached_property
    def users(self) -> acc.Users:
        return acc.Users(self)

    @cached_property
    def organization(self) -> acc.OrganizationAccessor:
        return acc.OrganizationAccessor(self)

    @cached_property
    def statuses(self) -> acc.Statuses:
        return acc.Statuses(self)

    @cached_property
    def pipelines(self) -> acc.Pipelines:
        return acc.Pipelines(self)

    @cached_property
    def webhooks(self) -> acc.CrudResource[m.WebhookSubscription, m.WebhookCreate, m.WebhookUpdate]:
        return acc.CrudResource(self, "webhook")

    @cached_property
    def events(self) -> acc.Events:
        return acc.Events(self)

    @cached_property
    def search(self) -> acc.Search:
        return acc.Search(self)

    @property
    def _http(self) -> httpx.AsyncClient:
        """An httpx client on the same (guarded) transport, for requests outside Close's API
        shape; the client's own requests do not use it."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                follow_redirects=False,
            )
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> CloseClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()  # closes the transport too
        else:
            await self._transport.aclose()

    def __repr__(self) -> str:
        extra = f", actor={self.actor!r}" if self.actor else ""
        return f"CloseClient(base_url={self.base_url!r}, auth={self.auth_kind!r}{extra})"

    @property
    def auth_kind(self) -> AuthKind:
        return "oauth" if self._oauth is not None else "api_key"

    @property
    def oauth_credentials(self) -> OAuthCredentials | None:
        """The current OAuth grant (renewed after a refresh), to persist; None for a key."""
        return self._oauth

    # -- raw requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request to ``path`` (relative to ``base_url``); the decoded JSON.

        An empty body decodes to ``{}``. Paths unknown to the catalog are allowed (the
        guard decides) and share the ``default`` rate group.
        """
        verb = method.upper()
        rel, query = normalize_path(path)
        try:
            ep: Endpoint | None = find_endpoint(verb, rel)[0]
        except UnknownEndpoint:
            ep = None
        merged = {**query, **(params or {})}
        response = await self._send(verb, rel, params=merged, json=json, endpoint=ep)
        return self._decode(response, verb, rel)

    async def get(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(
        self, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        return await self.request("POST", path, params=params, json=json)

    async def put(
        self, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        return await self.request("PUT", path, params=params, json=json)

    async def delete(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("DELETE", path, params=params)

    async def call(
        self,
        endpoint: Endpoint | str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one catalog endpoint (an ``Endpoint`` or its name); the decoded JSON.

        The ``calls.Caller`` protocol the accessors and the LangChain tools share. Arguments
        are sent as given: validate them first (the typed accessors do).
        """
        ep = endpoint if isinstance(endpoint, Endpoint) else _endpoint_named(endpoint)
        path = path_of(ep, path_params)
        response = await self._send(ep.method, path, params=params, json=json, endpoint=ep)
        return self._decode(response, ep.method, path)

    # -- the send loop ---------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        endpoint: Endpoint | None,
    ) -> httpx.Response:
        is_read = method == "GET" or (endpoint is not None and endpoint.paging == "search")
        safe = is_read or _idempotent_update(method, endpoint, params, json)
        group = endpoint.rate_group if endpoint is not None else DEFAULT_GROUP
        call_id = os.urandom(16).hex()
        attempt = failures = rate_hits = 0
        refreshed = False
        while True:
            attempt += 1
            if self.budget is not None:
                await self._take_budget(group)
            record_rate_wait(await self._pacer.acquire(group))
            token_used = self._oauth.access_token if self._oauth else None
            request = self._build(method, path, params, json, call_id, attempt)
            try:
                response = await self._exchange(request)
            except CloseguardError:
                raise
            except httpx.RequestError as exc:
                sent = not isinstance(exc, _NOT_SENT)
                retryable = isinstance(exc, _NOT_SENT) or (safe and isinstance(exc, _TRANSIENT))
                failures += 1
                if retryable and failures < self.retry.max_attempts:
                    await self.clock.sleep(self._jitter(self.retry.backoff(failures)))
                    continue
                raise self._transport_error(exc, method, path, sent, attempt) from exc
            finally:
                self._pacer.release(group)
                # Sent (or not): the credential must not live on in errors that hold it.
                del request.headers["authorization"]
            self._pacer.observe(group, response.headers)
            if self.budget is not None:
                info = parse_rate_limit(response.headers)
                if info is not None:
                    await self.budget.observe(group, info, self.clock.now())
            status = response.status_code
            if status == 429:
                rate_hits += 1
                wait = rate_limit_wait(response, now_wall=self.clock.now())
                if wait is None:
                    wait = self.retry.default_rate_limit_wait * 2 ** (rate_hits - 1)
                if (
                    rate_hits > self.retry.max_rate_limit_retries
                    or wait > self.retry.max_rate_limit_wait
                ):
                    raise self._api_error(response, method, path, retry_after=wait)
                self._pacer.block(group, max(wait, self.retry.min_rate_limit_wait))
                continue
            if status == 401 and not refreshed and self._oauth and self._oauth.can_refresh:
                refreshed = True
                await self._refresh(token_used)
                continue
            if status in _RETRYABLE_READ_STATUS and safe:
                failures += 1
                if failures < self.retry.max_attempts:
                    await self.clock.sleep(self._jitter(self.retry.backoff(failures)))
                    continue
            if status >= 400:
                raise self._api_error(response, method, path)
            return response

    async def _take_budget(self, group: str) -> None:
        """Wait for the shared budget (every process's requests in this window) to grant one."""
        assert self.budget is not None
        while (wait := await self.budget.take(group, self.clock.now())) > 0:
            record_rate_wait(wait)
            await self.clock.sleep(wait)

    def _build(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        call_id: str,
        attempt: int,
    ) -> httpx.Request:
        """The request, built from parts parsed once: the base URL's, the fixed headers."""
        query = _query(params)
        url = self._prefix.url(path, str(httpx.QueryParams(query)) if query else None)
        headers = [*self._prefix.headers, (b"Authorization", self._authorization_value)]
        body = b""
        if json is not None:
            body = _dumps(json)
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
            headers.append((b"Content-Type", b"application/json"))
        elif method in ("POST", "PUT", "PATCH"):
            headers.append((b"Content-Length", b"0"))
        request = httpx.Request(
            method,
            url,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={
                "timeout": self._extensions_timeout,
                EXTENSION_KEY: {"call_id": call_id, "attempt": attempt},
            },
        )
        request.read()
        return request

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the (guarded) transport and read the whole answer; what
        ``httpx.AsyncClient.send`` does for us without its cookies, auth and redirect
        machinery, none of which a Close request uses."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    def _authorization(self) -> str:
        if self._oauth is not None:
            return f"Bearer {self._oauth.access_token}"
        raw = f"{self._api_key}:".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    # -- OAuth -----------------------------------------------------------------------------

    async def _refresh(self, token_used: str | None) -> None:
        """Renew the access token once, however many callers saw the 401."""
        async with self._refresh_lock:
            creds = self._oauth
            if creds is None or creds.access_token != token_used:
                return
            token_path = urlsplit(creds.token_url).path or "/"
            form = {"grant_type": "refresh_token", "refresh_token": creds.refresh_token or ""}
            if creds.client_id:
                form["client_id"] = creds.client_id
            if creds.client_secret:
                form["client_secret"] = creds.client_secret
            request = httpx.Request(
                "POST",
                creds.token_url,
                data=form,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                extensions={"timeout": self._timeout.as_dict()},
            )
            try:
                response = await self._inner.handle_async_request(request)
                await response.aread()
            except httpx.RequestError as exc:
                raise self._transport_error(
                    exc, "POST", token_path, not isinstance(exc, _NOT_SENT), 1, what="token refresh"
                ) from exc
            # The form carried the refresh token and client secret: keep neither around.
            response.request = httpx.Request("POST", creds.token_url)
            payload = _json_or_none(response)
            token = payload.get("access_token") if isinstance(payload, dict) else None
            if response.status_code >= 400 or not isinstance(token, str) or not token:
                raise Unauthorized(
                    f"POST {token_path}: OAuth token refresh failed ({response.status_code}); "
                    "reconnect the Close account",
                    response=response,
                )
            renewed = payload.get("refresh_token") if isinstance(payload, dict) else None
            if not isinstance(renewed, str) or not renewed:
                renewed = creds.refresh_token
            self._oauth = replace(creds, access_token=token, refresh_token=renewed)
            self._authorization_value = self._authorization().encode("ascii")
            if self._on_token_refresh is not None:
                outcome = self._on_token_refresh(self._oauth)
                if inspect.isawaitable(outcome):
                    await outcome

    # -- answers and errors ----------------------------------------------------------------

    def _decode(self, response: httpx.Response, method: str, path: str) -> Any:
        content = response.content
        if not content.strip():
            return {}
        try:
            return loads(content)
        except ValueError as exc:
            raise ResponseFormatError(
                f"{method} {path}: Close answered {response.status_code} with a body that is "
                f"not JSON ({_text_snippet(response.text, 80)!r}); the call itself went through",
                method=method,
                path=path,
                raw=response.text,
            ) from exc

    def _secrets(self) -> list[str]:
        found = [self._api_key] if self._api_key else []
        if self._api_key:
            found.append(base64.b64encode(f"{self._api_key}:".encode()).decode("ascii"))
        if self._oauth is not None:
            found += [
                s
                for s in (
                    self._oauth.access_token,
                    self._oauth.refresh_token,
                    self._oauth.client_secret,
                )
                if s
            ]
        return [s for s in found if len(s) >= 4]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _api_error(
        self,
        response: httpx.Response,
        method: str,
        path: str,
        *,
        retry_after: float | None = None,
    ) -> CloseAPIError:
        status = response.status_code
        body = _json_or_none(response)
        detail = _close_message(body) if body is not None else _text_snippet(response.text)
        message = f"{method} {path} failed: {status} {response.reason_phrase}".rstrip()
        detail = _without_prefix(detail, response.reason_phrase)
        if detail:
            message += f": {detail}"
        errors: list[Any] = []
        field_errors: dict[str, Any] = {}
        if isinstance(body, dict):
            raw_errors = body.get("errors")
            errors = list(raw_errors) if isinstance(raw_errors, list) else []
            raw_fields = body.get("field-errors", body.get("field_errors"))
            field_errors = dict(raw_fields) if isinstance(raw_fields, dict) else {}
        if errors:
            message += f"; errors: {'; '.join(str(e) for e in errors)}"
        if field_errors:
            message += "; field errors: " + "; ".join(f"{k}: {v}" for k, v in field_errors.items())
        if retry_after is not None and status == 429:
            message += f" (Close asks to wait {retry_after:g}s; retries ran out)"
        message = self._scrub(message)
        cls = error_class_for(status)
        if cls is BadRequest:
            return BadRequest(message, response=response, errors=errors, field_errors=field_errors)
        if cls is RateLimited:
            return RateLimited(message, response=response, retry_after=retry_after or 0.0)
        return cls(message, response=response)

    def _transport_error(
        self,
        exc: httpx.RequestError,
        method: str,
        path: str,
        sent: bool,
        attempts: int,
        *,
        what: str = "request",
    ) -> CloseConnectionError:
        kind = type(exc).__name__
        outcome = (
            "it may have reached Close, so it was not resent"
            if sent and method != "GET"
            else "no answer"
        )
        tries = f" after {attempts} attempt(s)" if attempts > 1 else ""
        message = self._scrub(f"{method} {path}: {what} failed ({kind}{tries}); {outcome}")
        return CloseConnectionError(message, method=method, path=path, request_sent=sent)


_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9_.~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*")
_PLAIN_QUERY = re.compile(r"(?:[A-Za-z0-9_.~!$'()*+,;=:@/?&-]|%[0-9A-Fa-f]{2})*")
"""Paths and queries httpx would keep exactly as they are (nothing to quote or normalize)."""


class _Prefix:
    """What every request of one client shares, parsed once: the base URL and the fixed
    headers (``Host`` and httpx's defaults, ``Accept``, ``User-Agent``).

    A request's URL is the base's parsed form with the path and query put in when they are
    already in httpx's canonical form (a catalog path with quoted ids, an encoded query:
    every request the client builds), instead of parsing and checking the whole URL again
    character by character; anything else is parsed by ``httpx.URL``.
    """

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        self.base = str(url).rstrip("/")
        self.path = url.path.rstrip("/")
        self.headers = ((b"Host", url.netloc), *_default_headers())
        reference = getattr(url, "_uri_reference", None)
        fields = getattr(reference, "_fields", ())
        self._reference = reference if "path" in fields and "query" in fields else None

    def url(self, path: str, query: str | None) -> httpx.URL:
        reference = self._reference
        if (
            reference is not None
            and path.startswith("/")
            and _PLAIN_PATH.fullmatch(path)
            and (query is None or _PLAIN_QUERY.fullmatch(query))
            and "/./" not in path
            and "/../" not in path
            and not path.endswith(("/.", "/.."))
        ):
            url = httpx.URL.__new__(httpx.URL)
            url._uri_reference = reference._replace(path=self.path + path, query=query)
            return url
        return httpx.URL(self.base + path if query is None else f"{self.base}{path}?{query}")


_JITTER_RNG = random.Random()
"""The jitter's source, shared: seeding a ``Random`` per client (one per workflow run) reads
the OS's entropy each time, and the waits need no stream of their own."""


@lru_cache(maxsize=16)
def _timeout_of(seconds: float) -> httpx.Timeout:
    """httpx's (immutable) timeout for ``seconds``, made once per value."""
    return httpx.Timeout(seconds)


@lru_cache(maxsize=64)
def _prefix_for(base_url: str) -> _Prefix:
    """The parsed prefix of ``base_url``, shared by every client on it (the executor makes
    one client per workflow run, and parsing the base URL each time showed in its profile)."""
    return _Prefix(base_url)


@cache
def _default_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The headers an ``httpx.AsyncClient`` made with ours sends (its ``Accept-Encoding``
    names the encodings httpx can decode here), asked of httpx once."""
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(204)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )
    return tuple(client.headers.raw)


def _dumps(value: Any) -> bytes:
    """JSON as httpx sends ``json=``: compact, UTF-8, no NaN."""
    return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def _credentials_from(settings: Settings) -> tuple[str | None, OAuthCredentials | None]:
    if settings.close_api_key is not None and settings.close_api_key.get_secret_value():
        return settings.close_api_key.get_secret_value(), None
    token = settings.close_oauth_access_token
    if token is not None and token.get_secret_value():
        refresh = settings.close_oauth_refresh_token
        secret = settings.close_oauth_client_secret
        return None, OAuthCredentials(
            access_token=token.get_secret_value(),
            refresh_token=refresh.get_secret_value() if refresh else None,
            client_id=settings.close_oauth_client_id,
            client_secret=secret.get_secret_value() if secret else None,
        )
    return None, None


def _endpoint_named(name: str) -> Endpoint:
    try:
        return endpoint(name)
    except KeyError as exc:
        raise InvalidArguments(str(exc.args[0]), operation=name) from None


def _query(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop ``None`` values; lists become comma-separated as Close expects."""
    if not params:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            value = ",".join(str(v) for v in value)
        out[key] = value
    return out


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _close_message(body: Any) -> str:
    """Close's ``error`` (a string, or ``{"message": ...}`` on 429s), else ``message``."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error
    message = body.get("message") or body.get("detail")
    return message if isinstance(message, str) else ""


def _without_prefix(detail: str, reason: str) -> str:
    """The detail without a leading repeat of the reason phrase ("Unauthorized: ...")."""
    if reason and detail.lower().startswith(reason.lower()):
        return detail[len(reason) :].lstrip(" :.-")
    return detail


def _text_snippet(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt of a non-JSON body (an ingress HTML page, say)."""
    collapsed = " ".join(text.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1] + "…"
