"""The console's Starlette app: approvals, runs and the audit log, behind a login token.

``build_console(ConsoleConfig(store=..., token=...))`` returns the ASGI app; ``serve`` in
``closeguard.console.server`` puts it on a port. Pages are rendered on the server; the one
script polls a small JSON digest and re-renders a page's list when it changes.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closeguard.console import queries
from closeguard.console.api import ApprovalsAPI
from closeguard.console.oidc import OIDC, OIDC_COOKIE, OIDCError, OIDCSettings
from closeguard.console.records import Reader, Touched
from closeguard.console.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    new_token,
    same,
)
from closeguard.guardrails import Accounts, Approval, Approvals, AuditLog, VerifyReport
from closeguard.store import Store
from closeguard.store.effects import EffectRows
from closeguard.store.health import readiness, sample
from closeguard.store.runs import RunRows
from closeguard.telemetry import Probes, metrics
from closeguard.telemetry.health import PATHS
from closeguard.tools.errors import ApprovalError, ApprovalForbidden
from closeguard.workflows.definition import Workflow
from closeguard.workflows.queue import SqlRunQueue

__all__ = ["ConsoleConfig", "build_console"]

HERE = Path(__file__).parent
COMMENT_MAX = 2000
NAME_MAX = 100
READ_LIMIT = 20
"""Pending approvals whose touched records are read for one page (the newest)."""
NAMES_MAX = 50
"""Lead and user ids named on one runs or audit page (each read once, then cached)."""
RECORD_ID = re.compile(r"\b(?:lead|user)_[A-Za-z0-9]{6,}")
VERIFY_FOR = 30.0
"""Seconds a chain verification is shown again while the head has not moved (a full
verification reads every row: about 0.8 s per 100,000 on SQLite)."""
LOGIN_FAILURES = 10
"""Wrong tokens allowed per minute before logins are refused for the rest of it."""
HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
Handler = Callable[[Request], Awaitable[Response]]
BOOTSTRAP_ROLES: tuple[str, ...] = ("admin",)
"""The roles of a login with the shared operator token (``CLOSEGUARD_CONSOLE_TOKEN``)."""


@dataclass
class ConsoleConfig:
    """What the console serves: ``store`` (approvals, runs, audit), the login ``token``,
    an optional ``reader`` for the current state of touched records, the ``workflows`` (for
    their steps), ``secure_cookies`` behind HTTPS, the page refresh period in seconds, and
    ``oidc`` for single sign-on (``oidc_transport``: tests reach a provider without the
    network)."""

    store: Store
    token: str
    reader: Reader | None = None
    workflows: Mapping[str, Workflow] = field(default_factory=dict)
    secure_cookies: bool = False
    poll: float = 1.5
    oidc: OIDCSettings | None = None
    oidc_transport: Any = None
    probes: Probes | None = None
    """The ``/readyz`` checks (``closeguard run`` shares its runtime's); the store's own are
    added either way."""


class _Headers:
    """Adds the security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with if scope["type"] == "http" else send)


class Console:
    """The routes, bound to one configuration and its sessions."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.store = config.store
        self.sessions = Sessions(config.store)
        self.accounts = Accounts(config.store)
        self.approvals = Approvals(config.store)
        self.api = ApprovalsAPI(config.store, self.approvals, self.accounts)
        self.oidc = OIDC(config.oidc, transport=config.oidc_transport) if config.oidc else None
        self.runs = RunRows(config.store)
        self.effects = EffectRows(config.store)
        self.audit = AuditLog(config.store)
        self.describer = config.reader.describer if config.reader is not None else None
        self.queue = SqlRunQueue(config.store)
        self.failures: list[float] = []
        self._verification: tuple[float, tuple[int, str], VerifyReport] | None = None
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters["when"] = queries.when
        env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
        env.filters["shown"] = _shown
        env.globals["poll_ms"] = int(config.poll * 1000)
        env.globals["sso"] = self.oidc is not None

    # -- plumbing --------------------------------------------------------------------------

    async def session(self, request: Request) -> Session | None:
        """The request's session; a person's account is read again, so a disabled account
        is logged out at once and a change of roles applies on the next page."""
        session = await self.store.run(self.sessions.get, request.cookies.get(SESSION_COOKIE))
        if session is None or session.via == "console-token":
            return session
        account = await self.store.run(self.accounts.get, session.name)
        if account is None or account.disabled:
            await self.store.run(self.sessions.close, session.id)
            return None
        session.roles = account.roles
        return session

    def page(
        self, request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any
    ) -> Response:
        flash, error = session.flash_take() if session else (None, None)
        ctx.setdefault("flash", flash)
        ctx.setdefault("error", error)
        return self.templates.TemplateResponse(
            request, name, {"session": session, **ctx}, status_code=status
        )

    def guarded(self, handler: Callable[[Request, Session], Awaitable[Response]]) -> Handler:
        """Only for a logged-in session; every POST must carry the session's CSRF token."""

        async def wrapped(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                if request.method != "GET":
                    return Response("log in first", status_code=403, media_type="text/plain")
                if request.url.path.startswith("/api/"):
                    return JSONResponse({"error": "log in first"}, status_code=401)
                target = quote(request.url.path, safe="/")
                return RedirectResponse(f"/login?next={target}", status_code=303)
            if request.method == "POST":
                form = await request.form()
                given = form.get("csrf")
                if not same(given if isinstance(given, str) else None, session.csrf):
                    return Response(
                        "refused: the form's CSRF token is missing or wrong",
                        status_code=403,
                        media_type="text/plain",
                    )
            response = await handler(request, session)
            if session.changed:
                await self.store.run(self.sessions.save, session)
            return response

        return wrapped

    # -- login -----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self._login(request, None, 200)

    def _login(
        self, request: Request, error: str | None, status: int, target: str | None = None
    ) -> Response:
        nonce = new_token()
        target = target or request.query_params.get("next", "/approvals")
        response = self.page(
            request, "login.html", None, status, nonce=nonce, next=_local(target), error=error
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=600,
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies,
        )
        return response

    async def login(self, request: Request) -> Response:
        form = _text_fields(await request.form(), "token", "name", "csrf", "next")
        if form is None:
            return _not_text()
        token, name, nonce = form["token"], form["name"], form["csrf"]
        goto = _local(form["next"] or "/approvals")
        if not same(nonce, request.cookies.get(LOGIN_COOKIE) or "\0"):
            return Response(
                "refused: the form's CSRF token is missing or wrong",
                status_code=403,
                media_type="text/plain",
            )
        now = time.monotonic()
        self.failures = [t for t in self.failures if t > now - 60]
        if len(self.failures) >= LOGIN_FAILURES:
            return self._login(request, "Too many wrong tokens: wait a minute.", 429, goto)
        if same(token, self.config.token):
            name = " ".join(name.split())[:NAME_MAX]
            if not name:
                return self._login(
                    request, "Say who you are: your name goes on every decision.", 400, goto
                )
            if await self.store.run(self.accounts.get, name) is not None:
                return self._login(
                    request, f"{name} has an account: log in with their own token.", 400, goto
                )
            roles, via = BOOTSTRAP_ROLES, "console-token"
        else:
            account = await self.accounts.aauthenticate(token)
            if account is None:
                self.failures.append(now)
                return self._login(request, "Wrong token.", 401, goto)
            name, roles, via = account.name, account.roles, "token"
        return await self._open(name, roles, via, goto)

    async def _open(self, name: str, roles: tuple[str, ...], via: str, goto: str) -> Response:
        """Log in: a session in the store, its id in the cookie."""
        session = await self.store.run(self.sessions.open, name, roles, via)
        response = RedirectResponse(goto, 303)
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies,
            max_age=int(self.sessions.ttl),
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    async def sso_start(self, request: Request) -> Response:
        if self.oidc is None:
            return Response("single sign-on is not configured", 404, media_type="text/plain")
        goto = _local(request.query_params.get("next", "/approvals"))
        try:
            url, cookie = await self.oidc.start(str(request.url_for("sso_done")), goto)
        except OIDCError as exc:
            return self._login(request, str(exc), 502, goto)
        response = RedirectResponse(url, 303)
        response.set_cookie(
            OIDC_COOKIE,
            cookie,
            max_age=600,
            httponly=True,
            samesite="lax",
            secure=self.config.secure_cookies,
        )
        return response

    async def sso_done(self, request: Request) -> Response:
        """The provider's redirect back: the person's email names their account."""
        if self.oidc is None:
            return Response("single sign-on is not configured", 404, media_type="text/plain")
        redirect_uri = str(request.url_for("sso_done"))
        try:
            email, goto = await self.oidc.finish(
                redirect_uri, dict(request.query_params), request.cookies.get(OIDC_COOKIE)
            )
        except OIDCError as exc:
            return self._login(request, str(exc), 400)
        account = await self.store.run(self.accounts.by_email, email)
        if account is None or account.disabled:
            why = "is disabled" if account else "has no account here"
            return self._login(request, f"{email} {why}: ask an operator.", 403)
        response = await self._open(account.name, account.roles, "oidc", _local(goto))
        response.delete_cookie(OIDC_COOKIE)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        await self.store.run(self.sessions.close, session.id)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- approvals -------------------------------------------------------------------------

    async def approvals_page(self, request: Request, session: Session) -> Response:
        return await self._approvals(request, session)

    async def _approvals(
        self, request: Request, session: Session, status: int = 200, error: str | None = None
    ) -> Response:
        await self.store.run(self.approvals.expire)
        digest = await self.store.run(queries.approvals_digest, self.approvals)  # as runs_page
        pending, decided = await self.store.run(queries.recent, self.approvals)
        touched: dict[str, list[Touched]] = {}
        sentences: dict[str, str] = {}
        if self.config.reader is not None:
            for approval in pending[:READ_LIMIT]:
                touched[approval.id] = await self.config.reader.touched(approval)
        if self.describer is not None:
            for approval in pending[:READ_LIMIT]:
                sentences[approval.id] = await self.describer.sentence(approval)
        asking = await self.store.run(self._askers, pending)
        answerable = {a.id for a in pending if not set(session.roles).isdisjoint(a.approvers)}
        partial = request.query_params.get("partial") == "1"
        return self.page(
            request,
            "_approvals.html" if partial else "approvals.html",
            session,
            status,
            pending=pending,
            decided=decided,
            touched=touched,
            sentences=sentences,
            asking=asking,
            answerable=answerable,
            digest=digest,
            reader=self.config.reader is not None,
            error=error,
        )

    def _askers(self, pending: list[Approval]) -> dict[str, str]:
        """Who asks for each approval: a workflow run we know, else an agent/MCP thread."""
        out = {}
        for a in pending:
            run = self.runs.get(a.run_id) if a.run_id else None
            out[a.id] = "workflow run" if run is not None else "agent or MCP thread"
        return out

    async def decide(self, request: Request, session: Session) -> Response:
        approval_id = request.path_params["approval_id"]
        action = request.path_params["action"]
        if action not in ("approve", "reject"):
            return Response("no such action", status_code=404, media_type="text/plain")
        form = _text_fields(await request.form(), "comment", "call_hash")
        if form is None:
            return _not_text()
        comment = " ".join(form["comment"].split())[:COMMENT_MAX] or None
        found = await self.store.run(self.approvals.get, approval_id)
        if found is None:
            return await self._approvals(request, session, 404, f"No approval {approval_id}.")
        if form["call_hash"] != found.call_hash:
            return await self._approvals(
                request, session, 409, f"Approval {approval_id} is not for the call shown."
            )
        decide = self.approvals.approve if action == "approve" else self.approvals.reject
        try:
            decided = await self.store.run(
                decide,
                approval_id,
                by=session.name,
                note=comment,
                via=session.via,
                channel="console",
                roles=session.roles,
            )
        except ApprovalForbidden as exc:
            return await self._approvals(request, session, 403, f"Refused: {exc}.")
        except ApprovalError as exc:
            return await self._approvals(request, session, 409, f"Refused: {exc}.")
        verb = "Approved" if action == "approve" else "Rejected"
        session.flash = f"{verb} {decided.endpoint} ({decided.id}) as {session.name}."
        return RedirectResponse("/approvals", 303)

    # -- runs ------------------------------------------------------------------------------

    async def runs_page(self, request: Request, session: Session) -> Response:
        # the digest first: read after the rows, it could already count a change the rows
        # missed, and the page's poller would then never see a difference to fetch
        digest = await self.store.run(queries.runs_digest, self.runs)
        recent, dead, skipped = await self.store.run(queries.runs_overview, self.runs)
        partial = request.query_params.get("partial") == "1"
        names = await self._names(r.lead_id for r in [*dead, *recent])
        return self.page(
            request,
            "_runs.html" if partial else "runs.html",
            session,
            recent=recent,
            dead=dead,
            skipped=skipped,
            digest=digest,
            names=names,
        )

    async def _names(self, texts: Iterable[str | None]) -> dict[str, str]:
        """Names of the lead and user ids in ``texts`` (the first ``NAMES_MAX``), read
        through the read-only client and cached; none without a Close connection."""
        if self.describer is None:
            return {}
        ids = dict.fromkeys(m for text in texts if text for m in RECORD_ID.findall(text))
        return await self.describer.names(list(ids)[:NAMES_MAX])

    async def run_page(self, request: Request, session: Session) -> Response:
        return await self._run_page(request, session, request.path_params["run_id"])

    async def _run_page(
        self,
        request: Request,
        session: Session,
        run_id: str,
        status: int = 200,
        error: str | None = None,
    ) -> Response:
        run = await self.store.run(self.runs.get, run_id)
        if run is None:
            return self.page(request, "missing.html", session, 404, what=f"run {run_id}")
        effects = await self.store.run(self.effects.for_run, run_id)
        calls = await self.store.run(queries.calls_of, self.store, run_id)
        workflow = self.config.workflows.get(run.workflow)
        steps = [(s.__name__, _first_line(s.__doc__)) for s in workflow.steps] if workflow else []
        names = await self._names([run.lead_id])
        return self.page(
            request,
            "run.html",
            session,
            status,
            run=run,
            effects=effects,
            calls=calls,
            writes=[c for c in calls if c["access"] not in (None, "read")],
            errors=[c for c in calls if c["error"] or c["decision"] == "deny"],
            steps=steps,
            names=names,
            error=error,
        )

    async def retry(self, request: Request, session: Session) -> Response:
        """Queue a dead or failed run again; any other run (or no run) is a 4xx, not a
        redirect, so a refused retry is never mistaken for one that happened."""
        run_id = request.path_params["run_id"]
        if await self.queue.retry(run_id):
            session.flash = f"Run {run_id} is queued again in its lead's order."
            return RedirectResponse(f"/runs/{quote(run_id)}", 303)
        return await self._run_page(
            request, session, run_id, 409, f"Run {run_id} is not dead or failed: not retried."
        )

    # -- audit -----------------------------------------------------------------------------

    def _filter(self, request: Request) -> queries.AuditFilter:
        q = request.query_params
        return queries.AuditFilter(
            **{k: q.get(k, "").strip() for k in ("actor", "endpoint", "decision", "since", "until")}
        )

    async def audit_page(self, request: Request, session: Session) -> Response:
        flt = self._filter(request)
        error = None
        try:
            rows = await self.store.run(queries.audit_rows, self.store, flt)
        except ValueError:
            rows, error = [], "Times are UTC, as 2026-11-27 or 2026-11-27T16:05."
        report = await self.store.run(self._verified)
        choices = await self.store.run(queries.audit_choices, self.store)
        names = await self._names(f"{r['path']} {r['args']}" for r in rows)
        for row in rows:
            found = RECORD_ID.findall(f"{row['path']} {row['args']}")
            row["named"] = list(dict.fromkeys(names[i] for i in found if i in names))
        return self.page(
            request,
            "audit.html",
            session,
            400 if error else 200,
            rows=rows,
            report=report,
            flt=flt,
            choices=choices,
            export=f"/audit/export.jsonl?{urlencode(flt.query())}",
            error=error,
        )

    def _verified(self) -> VerifyReport:
        """The chain's verification, redone when the head moved or it is ``VERIFY_FOR`` old."""
        head, now = self.audit.head(), time.monotonic()
        last = self._verification
        if last is not None and last[1] == head and now - last[0] < VERIFY_FOR:
            return last[2]
        report = self.audit.verify()
        self._verification = (now, head, report)
        return report

    async def export(self, request: Request, session: Session) -> Response:
        try:
            rows = await self.store.run(
                queries.audit_rows, self.store, self._filter(request), limit=None
            )
        except ValueError:
            return Response("bad time filter", status_code=400, media_type="text/plain")
        lines = (
            json.dumps({k: v for k, v in r.items() if k != "args_obj"}, sort_keys=True)
            for r in rows
        )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return Response(
            "".join(line + "\n" for line in lines),
            media_type="application/x-ndjson",
            headers={"content-disposition": f'attachment; filename="audit-{stamp}.jsonl"'},
        )

    # -- live updates ----------------------------------------------------------------------

    async def digest(self, request: Request, session: Session) -> Response:
        view = request.path_params["view"]
        if view == "approvals":
            value = await self.store.run(queries.approvals_digest, self.approvals)
        elif view == "runs":
            value = await self.store.run(queries.runs_digest, self.runs)
        else:
            return JSONResponse({"error": f"no view {view}"}, status_code=404)
        return JSONResponse({"digest": value})

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/approvals", 303)


def _text_fields(form: FormData, *names: str) -> dict[str, str] | None:
    """The named fields as text ("" when missing); None if any is an uploaded file, which
    no console form sends (its repr would otherwise pass for the value)."""
    out = {}
    for name in names:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            return None
        out[name] = value or ""
    return out


def _not_text() -> Response:
    return Response(
        "refused: the form's fields must be text, not files",
        status_code=400,
        media_type="text/plain",
    )


def _shown(value: Any) -> str:
    """A value in a table cell: text as is, anything else as compact JSON."""
    if value is None or value == "":
        return "-"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0]


def _local(target: str) -> str:
    """Only a path on this site as a redirect target (no open redirect)."""
    local = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if local else "/approvals"


def build_console(config: ConsoleConfig) -> Starlette:
    """The console as an ASGI app."""
    c = Console(config)
    g = c.guarded
    probes = config.probes or Probes()
    probes.add("store", functools.partial(readiness, config.store))
    metrics.set_sampler(repr(config.store), functools.partial(sample, config.store))
    routes = [
        *(Route(path, probes) for path in sorted(PATHS)),
        Route("/", c.home),
        Route("/login", c.login_form, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/login/sso", c.sso_start, methods=["GET"]),
        Route("/login/sso/done", c.sso_done, methods=["GET"], name="sso_done"),
        Route("/logout", g(c.logout), methods=["POST"]),
        Route("/approvals", g(c.approvals_page)),
        Route("/approvals/{approval_id}/{action:str}", g(c.decide), methods=["POST"]),
        Route("/runs", g(c.runs_page)),
        Route("/runs/{run_id}", g(c.run_page)),
        Route("/runs/{run_id}/retry", g(c.retry), methods=["POST"]),
        Route("/audit", g(c.audit_page)),
        Route("/audit/export.jsonl", g(c.export)),
        Route("/api/digest/{view}", g(c.digest)),
        *c.api.routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = c
    app.add_middleware(_Headers)
    return app
