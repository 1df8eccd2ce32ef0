"""Enforcement at the transport: nothing reaches Close without passing the guard.

``GuardTransport`` wraps any ``httpx.AsyncBaseTransport``. For each request it classifies
the call with the catalog (arguments included), decides, and then:

- deny: audits the attempt and raises ``PolicyViolation`` before a byte leaves;
- needs approval: uses a granted approval for exactly this call (consuming it), or creates
  a pending one, audits it and raises ``ApprovalRequired`` with its id;
- allow: charges quotas (once per logical call), sends, audits status and latency; in
  ``dry_run`` mode a write is not sent: a fake response marked ``x-closeguard-dry-run``
  comes back instead. Reads are sent in dry runs (they change nothing).

Every attempt is audited (a 429 retry is a second row with the same ``call_id``). Each
row's ``args`` also keep what a re-decision of the call needs beyond its arguments
(``policy replay``): ``scope.triggered``, the run's triggered leads (null: none), and, for a
transport outside any run, ``scope.session``, the key its per-run limits counted under.
``Guarded(policy, ...)`` is the ``TransportGuard`` hook ``CloseClient(policy=...)`` calls:
a ``Policy`` is only data, and building its enforcement lives here.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, NoReturn

import httpx
import orjson

from closeguard.guardrails.approvals import Approval, Approvals, hash_call
from closeguard.guardrails.audit import EMPTY_ROW, AuditLog
from closeguard.guardrails.decision import Decision, Guard, RunContext
from closeguard.guardrails.dryrun import DRY_RUN_HEADER, fake_result
from closeguard.guardrails.policy import Policy
from closeguard.guardrails.quotas import Quotas, Reserved
from closeguard.guardrails.redact import canonical_json, redacted_json
from closeguard.store import Store, default_store
from closeguard.store.effects import PENDING_INTENT, PendingIntent
from closeguard.telemetry.tracing import traced
from closeguard.tools._json import may_hold_long_number
from closeguard.tools.catalog import API_PREFIX, Call, classify, relative_path
from closeguard.tools.clock import Clock, SystemClock
from closeguard.tools.errors import ApprovalRequired, PolicyViolation, QuotaExhausted

__all__ = ["GuardTransport", "Guarded"]

EXTENSION = "closeguard"


class Guarded:
    """A policy bound to a store and run context; ``wrap`` is the client's guard hook.

    ``CloseClient(policy=Guarded(Policy.load("sales-rep")), actor="bot")``; the store
    defaults to ``CLOSEGUARD_STORE_URL``'s, ``triggered_leads`` scopes a workflow run,
    ``clock`` (default: the system's) times the per-window limits.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        store: Store | None = None,
        triggered_leads: Iterable[str] | None = None,
        approval_ttl: float | None = None,
        guard: Guard | None = None,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
        flush_on_close: bool = True,
    ) -> None:
        self.policy = policy
        self.store = store
        self.triggered_leads = None if triggered_leads is None else frozenset(triggered_leads)
        self.approval_ttl = approval_ttl
        self.guard = guard or Guard(policy)
        self.clock = clock
        self.audit = audit
        self.flush_on_close = flush_on_close
        """False: whoever passed ``audit`` writes its last rows (the workflow worker, in
        the transaction that records the run's outcome)."""

    def wrap(
        self, transport: httpx.AsyncBaseTransport, *, actor: str | None, run_id: str | None
    ) -> GuardTransport:
        return GuardTransport(
            transport,
            self.guard,
            actor=actor,
            run_id=run_id,
            store=self.store or default_store(),
            triggered_leads=self.triggered_leads,
            approval_ttl=self.approval_ttl,
            clock=self.clock,
            audit=self.audit,
            flush_on_close=self.flush_on_close,
        )


STATUS_READS = (
    ("/status/lead/", "status.lead.list"),
    ("/status/opportunity/", "status.opportunity.list"),
)
"""What the guard reads, once, for ``when`` conditions on ``status_label``/``status_type``."""
_STATUS_RULE = "when.statuses"
_WINDOW = "limits.per_window."


def _utc(epoch: float) -> str:
    """``epoch`` as an ISO time in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode_body(content: bytes) -> Any:
    """The request's JSON body, exactly as sent.

    orjson is used for speed, except where it would be inexact (it turns integers past 64
    bits into floats) or refuses the text; the standard library decodes those.
    """
    if not content:
        return {}
    if not may_hold_long_number(content):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return {"_unparsed_bytes": len(content)}


_NO_ARGS = '{"body":{},"params":{}}'
"""``redacted_json`` of a request with no body and no query: most reads."""
_QUERIES: dict[bytes, tuple[dict[str, str], str]] = {}
_QUERIES_MAX = 1024


def _query(query: bytes) -> tuple[dict[str, str], str]:
    """The query's parameters as ``dict(url.params)`` has them (the first of repeated
    names), and the audit ``args`` of a request with this query and no body; remembered
    by the raw query, so the dict is shared: callers must not change it."""
    found = _QUERIES.get(query)
    if found is None:
        params = dict(httpx.QueryParams(query.decode("ascii")))
        found = (params, redacted_json({"body": {}, "params": params}))
        if len(_QUERIES) >= _QUERIES_MAX:
            _QUERIES.clear()
        _QUERIES[query] = found
    return found


_PATHS: dict[str, str] = {}
_PATHS_MAX = 4096


def _relative(url_path: str) -> str:
    """``relative_path(url_path)``, remembered in ``_PATHS``."""
    path = relative_path(url_path)
    if len(_PATHS) >= _PATHS_MAX:
        _PATHS.clear()
    _PATHS[url_path] = path
    return path


def _scope_suffix(context: RunContext, quota_run: str) -> str:
    """What ends every ``args`` of a transport: ``,"scope":{...}}``, the call's scope
    (``scope`` sorts after ``body`` and ``params``, so the JSON stays canonical)."""
    leads = None if context.triggered_leads is None else sorted(context.triggered_leads)
    scope: dict[str, Any] = {"triggered": leads}
    if context.run_id is None:
        scope["session"] = quota_run
    return f',"scope":{canonical_json(scope)}}}'


async def _names_missing(response: httpx.Response) -> bool:
    """Close refused a write because its object is not there (404, or a 400 saying "does
    not exist"): nothing was written, so the write is not counted against the run."""
    if response.status_code == 404:
        return True
    body = await response.aread()
    return b"does not exist" in body.lower()


class GuardTransport(httpx.AsyncBaseTransport):
    """Classify, decide, enforce and audit every request, then pass it to ``inner``."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        guard: Guard | Policy,
        *,
        actor: str | None = None,
        run_id: str | None = None,
        store: Store | None = None,
        triggered_leads: Iterable[str] | None = None,
        approval_ttl: float | None = None,
        audit: AuditLog | None = None,
        approvals: Approvals | None = None,
        clock: Clock | None = None,
        flush_on_close: bool = True,
    ) -> None:
        self.inner = inner
        self.flush_on_close = flush_on_close
        self.guard = guard if isinstance(guard, Guard) else Guard(guard)
        self.policy = self.guard.policy
        self.store = store or default_store()
        self.context = RunContext(
            actor=actor,
            run_id=run_id,
            triggered_leads=None if triggered_leads is None else frozenset(triggered_leads),
        )
        self.audit = audit or AuditLog(self.store)
        self.approvals = approvals or Approvals(self.store)
        self.approval_ttl = approval_ttl
        self.quotas = Quotas(self.policy, self.store, (clock or SystemClock()).now)
        self._quota_run = run_id or f"transport-{uuid.uuid4().hex}"
        self._scope = _scope_suffix(self.context, self._quota_run)
        self._approved: OrderedDict[str, str] = OrderedDict()
        self.dry_run = self.policy.mode == "dry_run"

    @traced("close.request", lambda self, request: self.span_attributes(request))
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = perf_counter()
        meta = request.extensions.get(EXTENSION)
        if type(meta) is not dict:
            meta = meta if isinstance(meta, Mapping) else {}
        call_id = meta.get("call_id")
        if type(call_id) is not str or not call_id:
            call_id = str(call_id or uuid.uuid4().hex)
        attempt = meta.get("attempt")
        if type(attempt) is not int or not attempt:
            attempt = int(attempt or 1)
        try:
            content = request.content
        except httpx.RequestNotRead:
            content = await request.aread()
        url = request.url
        query = url.query
        params, args = _query(query) if query else ({}, _NO_ARGS)
        method, raw_path = request.method, url.path
        path = _PATHS.get(raw_path) or _relative(raw_path)
        raw_body: Any = {}
        if content:
            raw_body = _decode_body(content)
            args = redacted_json({"body": raw_body, "params": params})
        args = args[:-1] + self._scope
        body = raw_body if type(raw_body) is dict else None
        if self.guard.wants_statuses and self.guard.statuses_stale(body, started):
            await self._learn_statuses(request, call_id, attempt, started)
        decision = self.guard.decide_request(method, path, body, params, self.context)
        endpoint, access = decision.endpoint, decision.access
        if decision.outcome == "deny" or endpoint is None or access is None:
            row = self._row(call_id, attempt, method, path, args, decision)
            await self._refuse(row, decision, started)
        approval_id: str | None = None
        label = "allow"
        faked = self.dry_run and access != "read"
        if decision.outcome == "approve" and not faked:
            row = self._row(call_id, attempt, method, path, args, decision)
            call = classify(method, path, body, params)
            approval_id = await self._approval_for(call, decision, row, path, started)
            label = "approved"
        intent = PENDING_INTENT.get() if access != "read" else None
        if self.quotas.active or intent is not None:
            over = None
            if self.quotas.active:
                over = self.quotas.reserve(
                    call_id=call_id, run_id=self._quota_run, endpoint=endpoint, access=access
                )
            if over is None and intent is not None and intent.open():
                over = await self._commit_intent(intent, None, call_id)
            elif isinstance(over, Reserved):
                ready = intent is not None and intent.open()
                over = await self._commit_intent(intent if ready else None, over, call_id)
            if over is not None:
                limited = Decision(
                    "deny", over, f"{over} reached", decision.endpoint, decision.access
                )
                row = self._row(call_id, attempt, method, path, args, decision, approval_id)
                retry_at = self.quotas.window_end() if over.startswith(_WINDOW) else None
                await self._refuse(row, limited, started, retry_at=retry_at)
        if approval_id is not None and self._approved.get(call_id) != approval_id:
            if not await self.store.run(self.approvals.consume, approval_id):
                refused = Decision(
                    "deny",
                    decision.rule,
                    "approval was used, revoked or expired",
                    decision.endpoint,
                    decision.access,
                )
                row = self._row(call_id, attempt, method, path, args, decision, approval_id)
                await self._refuse(row, refused, started)
            self._remember(call_id, approval_id)
        if faked:
            row = self._row(call_id, attempt, method, path, args, decision)
            call = classify(method, path, body, params)
            return await self._fake(request, call, decision, row, started)
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            self.quotas.refund(call_id)
            row = self._row(call_id, attempt, method, path, args, decision, approval_id)
            row.update(
                decision=label,
                error=f"{type(exc).__name__}: {exc}"[:500],
                latency_us=int((perf_counter() - started) * 1e6),
            )
            await self._audit(row)
            raise
        status = response.status_code
        if status >= 500:
            self.quotas.refund(call_id)
        elif status in (400, 404) and access != "read" and await _names_missing(response):
            self.quotas.refund_writes(call_id)
        context = self.context
        due = self.audit.record(
            (
                context.actor,
                context.run_id,
                call_id,
                attempt,
                self.policy.name,
                decision.endpoint,
                method,
                path,
                decision.access,
                label,
                decision.rule,
                decision.reason,
                args,
                status,
                int((perf_counter() - started) * 1e6),
                f"HTTP {status}" if status >= 400 else None,
                approval_id,
            )
        )
        if due:
            await self.audit.aflush()
        return response

    async def _commit_intent(
        self, intent: PendingIntent | None, step: Reserved | None, call_id: str
    ) -> str | None:
        """Charge the call's per-window limits and commit the effect journal's intent
        waiting for it, in one transaction (one store trip): the limit that
        ran out (nothing committed), else None."""
        try:
            over = await self.quotas.acharge_window(
                step,
                call_id=call_id,
                dry_run=self.dry_run,
                before=None if intent is None else intent.commit_in,
            )
        except BaseException:
            if intent is not None:
                intent.settle(False)
            raise
        if intent is not None:
            intent.settle(over is None)
        return over

    def span_attributes(self, request: httpx.Request) -> dict[str, str | None]:
        """Who asks, under which policy (the audit row adds the decision and the status)."""
        context = self.context
        return {
            "actor": context.actor,
            "run_id": context.run_id,
            "policy": self.policy.name,
            "method": request.method,
        }

    async def _learn_statuses(
        self, request: httpx.Request, call_id: str, attempt: int, started: float
    ) -> None:
        """Read the lead and opportunity statuses through the inner transport, audited, for
        ``when`` conditions on ``status_label``/``status_type``. A failed read refuses the
        call: a condition that cannot be decided must not let it through unasked."""
        call_path = _relative(request.url.path)
        prefix = API_PREFIX if request.url.path.startswith(API_PREFIX) else ""
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("content-length", "content-type", "transfer-encoding")
        }
        statuses: dict[str, dict[str, str]] = {}
        for path, endpoint in STATUS_READS:
            read = httpx.Request(
                "GET", request.url.copy_with(path=prefix + path, query=None), headers=headers
            )
            why = "statuses read once for when conditions"
            reading = Decision("allow", _STATUS_RULE, why, endpoint, "read")
            row = self._row(uuid.uuid4().hex, 1, "GET", path, _NO_ARGS, reading)
            try:
                response = await self.inner.handle_async_request(read)
                await response.aread()
                if response.status_code >= 400:
                    raise httpx.HTTPStatusError(
                        f"HTTP {response.status_code}", request=read, response=response
                    )
                data = response.json().get("data") or []
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                refused = Decision(
                    "deny",
                    _STATUS_RULE,
                    f"could not read {path} for a when condition ({type(exc).__name__})",
                )
                await self._refuse(
                    self._row(call_id, attempt, request.method, call_path, _NO_ARGS, refused),
                    refused,
                    started,
                )
            row.update(decision="allow", status_code=response.status_code)
            await self._audit(row)
            for item in data:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    statuses[item["id"]] = {
                        k: str(item[k]) for k in ("label", "type") if item.get(k) is not None
                    }
        self.guard.learn_statuses(statuses, perf_counter())

    def _row(
        self,
        call_id: str,
        attempt: int,
        method: str,
        path: str,
        args: str,
        decision: Decision,
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        """The audit row of a call the hot path does not take (refused, held, faked, failed)."""
        return {
            **EMPTY_ROW,
            "actor": self.context.actor,
            "run_id": self.context.run_id,
            "call_id": call_id,
            "attempt": attempt,
            "policy": self.policy.name,
            "endpoint": decision.endpoint,
            "method": method,
            "path": path,
            "access": decision.access,
            "rule": decision.rule,
            "reason": decision.reason,
            "args": args,
            "approval_id": approval_id,
        }

    async def _refuse(
        self,
        row: dict[str, Any],
        decision: Decision,
        started: float,
        *,
        retry_at: float | None = None,
    ) -> NoReturn:
        """Audit the refusal, then raise it; ``retry_at``: a per-window limit ran out."""
        row.update(
            decision="deny",
            rule=decision.rule,
            reason=decision.reason,
            latency_us=int((perf_counter() - started) * 1e6),
        )
        self.audit.queue(row)
        await self.audit.aflush()
        message = (
            f"{row['method']} {row['path']} denied by policy {self.policy.name!r} "
            f"({decision.rule}): {decision.reason}"
        )
        if retry_at is not None:
            raise QuotaExhausted(
                f"{message} until {_utc(retry_at)}",
                retry_at=retry_at,
                decision=decision,
                rule=decision.rule,
            )
        raise PolicyViolation(message, decision=decision, rule=decision.rule)

    async def _approval_for(
        self, call: Call, decision: Decision, row: dict[str, Any], path: str, started: float
    ) -> str:
        """The id of a granted approval for this exact call, or raise ApprovalRequired."""
        call_id = row["call_id"]
        if call_id in self._approved:
            return self._approved[call_id]
        found = await self.store.run(self._granted_or_request, call, decision, row, path)
        if found.status == "approved":
            return found.id
        pending = found
        row.update(
            decision="approval_required",
            approval_id=pending.id,
            latency_us=int((perf_counter() - started) * 1e6),
        )
        self.audit.queue(row)
        await self.audit.aflush()
        raise ApprovalRequired(
            f"{row['method']} {path} ({call.endpoint.name}) needs approval "
            f"({decision.rule}): approve it with "
            f"`closeguard approvals approve {pending.id} --as NAME`",
            approval_id=pending.id,
            decision=decision,
        )

    def _granted_or_request(
        self, call: Call, decision: Decision, row: dict[str, Any], path: str
    ) -> Approval:
        """A granted approval for the call, else a pending one (found or created): one trip
        to the store's thread."""
        digest = hash_call(call, actor=self.context.actor, policy=self.policy.name)
        granted = self.approvals.granted(digest)
        if granted is not None:
            return granted
        return self.approvals.request(
            call,
            method=row["method"],
            path=path,
            rule=decision.rule,
            reason=decision.reason,
            policy=self.policy.name,
            actor=self.context.actor,
            run_id=self.context.run_id,
            ttl=self.approval_ttl,
            approvers=decision.approvers,
        )

    def _remember(self, call_id: str, approval_id: str) -> None:
        self._approved[call_id] = approval_id
        if len(self._approved) > 1000:
            self._approved.popitem(last=False)

    async def _fake(
        self,
        request: httpx.Request,
        call: Call,
        decision: Decision,
        row: dict[str, Any],
        started: float,
    ) -> httpx.Response:
        body = fake_result(call)
        row.update(
            decision="dry_run",
            status_code=200,
            reason=decision.reason
            if decision.allowed
            else f"dry run; enforce mode would ask approval ({decision.reason})",
            latency_us=int((perf_counter() - started) * 1e6),
        )
        await self._audit(row)
        return httpx.Response(200, json=body, headers={DRY_RUN_HEADER: "true"}, request=request)

    async def _audit(self, row: dict[str, Any]) -> None:
        """Queue the row; when the batch is due, write it on the store's thread."""
        if self.audit.queue(row):
            await self.audit.aflush()

    async def aclose(self) -> None:
        try:
            if self.flush_on_close:
                await self.audit.aflush()
        finally:
            await self.inner.aclose()
