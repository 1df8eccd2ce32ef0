"""The approvals JSON API on the console's port, for integrations and scripts.

``GET /api/approvals`` (``?status=pending`` by default, or any status, or ``all``;
``?limit=N``), ``GET /api/approvals/{id}``, ``POST /api/approvals/{id}/approve`` and
``.../reject`` with an optional JSON body ``{"note": "..."}``. Authenticated by
``Authorization: Bearer <personal token>`` only: no cookie is read, so there is nothing for
another site to forge (no CSRF). 401 without a valid token, 403 without one of the roles
the approval names, 404 for an unknown approval, 409 when it is already answered or expired.
Every account may list and read; every decision is audited by ``Approvals`` (channel
``api``, authenticated by ``token``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from closeguard.guardrails import Account, Accounts, Approval, Approvals
from closeguard.guardrails.approvals import Status
from closeguard.store import Store
from closeguard.tools.errors import ApprovalError, ApprovalForbidden

__all__ = ["ApprovalsAPI", "item"]

STATUSES = ("pending", "approved", "rejected", "consumed", "expired")
NOTE_MAX = 2000
LIMIT_MAX = 500


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def item(a: Approval) -> dict[str, Any]:
    """One approval as the API shows it (its arguments were redacted when it was asked)."""
    return {
        "id": a.id,
        "status": a.status,
        "endpoint": a.endpoint,
        "method": a.method,
        "path": a.path,
        "args": a.args,
        "actor": a.actor,
        "run_id": a.run_id,
        "reason": a.reason,
        "rule": a.rule,
        "approvers": list(a.approvers),
        "created": _iso(a.created),
        "expires": _iso(a.expires),
        "decided_by": a.decided_by,
        "decided_at": _iso(a.decided_at),
        "note": a.note,
    }


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"www-authenticate": 'Bearer realm="closeguard"'} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class ApprovalsAPI:
    """The API's handlers on one store."""

    def __init__(self, store: Store, approvals: Approvals, accounts: Accounts) -> None:
        self.store = store
        self.approvals = approvals
        self.accounts = accounts

    async def _who(self, request: Request) -> Account | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await self.accounts.aauthenticate(token.strip())

    async def listing(self, request: Request) -> Response:
        if await self._who(request) is None:
            return _error(401, "a personal token is needed: Authorization: Bearer <token>")
        status = request.query_params.get("status", "pending").lower()
        if status not in (*STATUSES, "all"):
            return _error(400, f"status is one of {', '.join(STATUSES)} or all, not {status!r}")
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= LIMIT_MAX:
            return _error(400, f"limit is a whole number from 1 to {LIMIT_MAX}")
        await self.store.run(self.approvals.expire)
        chosen = None if status == "all" else cast(Status, status)
        found = await self.store.run(self.approvals.list, chosen, limit=int(raw))
        return JSONResponse([item(a) for a in found])

    async def show(self, request: Request) -> Response:
        if await self._who(request) is None:
            return _error(401, "a personal token is needed: Authorization: Bearer <token>")
        approval_id = request.path_params["approval_id"]
        found = await self.store.run(self.approvals.get, approval_id)
        if found is None:
            return _error(404, f"no approval {approval_id}")
        return JSONResponse(item(found))

    async def decide(self, request: Request) -> Response:
        account = await self._who(request)
        if account is None:
            return _error(401, "a personal token is needed: Authorization: Bearer <token>")
        approval_id, action = request.path_params["approval_id"], request.path_params["action"]
        if action not in ("approve", "reject"):
            return _error(404, f"no action {action!r}: approve or reject")
        note = await _note(request)
        if isinstance(note, Response):
            return note
        if await self.store.run(self.approvals.get, approval_id) is None:
            return _error(404, f"no approval {approval_id}")
        decide = self.approvals.approve if action == "approve" else self.approvals.reject
        try:
            decided = await self.store.run(
                decide,
                approval_id,
                by=account.name,
                note=note,
                via="token",
                channel="api",
                roles=account.roles,
            )
        except ApprovalForbidden as exc:
            return _error(403, str(exc), approvers=list(exc.approvers))
        except ApprovalError as exc:
            return _error(409, str(exc))
        return JSONResponse(item(decided))

    def routes(self) -> list[Route]:
        return [
            Route("/api/approvals", self.listing, methods=["GET"]),
            Route("/api/approvals/{approval_id}", self.show, methods=["GET"]),
            Route("/api/approvals/{approval_id}/{action:str}", self.decide, methods=["POST"]),
        ]


async def _note(request: Request) -> str | Response | None:
    """The body's ``note`` (an empty body is no note), or the 400 to answer."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, 'the body is JSON: {"note": "..."}')
    if not isinstance(body, dict) or set(body) - {"note"}:
        return _error(400, 'the body is a JSON object with only "note"')
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        return _error(400, "note is text")
    note = " ".join((note or "").split())[:NOTE_MAX]
    return note or None
