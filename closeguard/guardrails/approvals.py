"""Approvals: a human yes for one exact call, stored so any process can grant it.

An approval is bound to the call's hash (endpoint + path parameters + canonical body and
query), so approving "update opportunity X to 50%" does not approve "… to 90%". It expires
(default 24 h) and is used up by the one call it was granted for. ``wait`` lets a workflow
run or agent thread park until a person decides.

``approvers`` are the roles that may answer the request, named by the policy rule that
asked (``approvers:`` in the policy, ``[admin]`` by default); they are stored with it, so
every process that answers knows them.

States: ``pending`` -> ``approved`` -> ``consumed``, or ``pending`` -> ``rejected``;
a pending or approved approval past its expiry reads as ``expired`` and cannot be used
(``expire`` records a pending one as ``expired``).

Every decision, whatever the channel, is a row of its own in the audit chain (method
``DECIDE``): the approval id, the call's hash, the decision (approved, rejected, edited,
expired), who decided and how they were authenticated, and the note. Whoever can write
the store can decide as anyone: the store is the trust boundary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from closeguard.guardrails.approval_record import Approval, Status, from_row
from closeguard.guardrails.audit import AuditLog
from closeguard.guardrails.redact import canonical_json, redact
from closeguard.guardrails.roles import DEFAULT_APPROVERS
from closeguard.tools.errors import ApprovalError, ApprovalForbidden

if TYPE_CHECKING:
    from closeguard.store import Store
    from closeguard.tools.catalog import Call

__all__ = [
    "DECIDE",
    "DEFAULT_TTL",
    "Approval",
    "ApprovalError",
    "ApprovalStorage",
    "Approvals",
    "Status",
    "call_hash",
]

DEFAULT_TTL = 24 * 3600.0
DECIDE = "DECIDE"
"""The audit ``method`` of a decision's row (a person's, or expiry's): no call to Close."""
EXPIRY_ACTOR = "closeguard"
_LISTENERS: list[Callable[[Approval], None]] = []


def on_request(listener: Callable[[Approval], None]) -> Callable[[], None]:
    """Call ``listener(approval)`` for each new request this process makes (a reused open
    request is not new); it runs on the requester's thread, so it must only queue work (the
    notifier does). A listener that raises is logged, never the requester's failure.
    Returns the function that removes it."""
    _LISTENERS.append(listener)

    def remove() -> None:
        if listener in _LISTENERS:
            _LISTENERS.remove(listener)

    return remove


def call_hash(
    endpoint: str,
    path_params: Mapping[str, Any],
    body: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    actor: str | None = None,
    policy: str | None = None,
) -> str:
    """What an approval is bound to: the exact call, arguments included, by this actor
    under this policy (a person who approved one agent's call approved no other's)."""
    payload = canonical_json(
        {
            "endpoint": endpoint,
            "path": dict(path_params),
            "body": dict(body),
            "params": dict(params),
            "actor": actor,
            "policy": policy,
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def hash_call(call: Call, *, actor: str | None = None, policy: str | None = None) -> str:
    return call_hash(
        call.endpoint.name, call.path_params, call.body, call.params, actor=actor, policy=policy
    )


Row = dict[str, Any]


class ApprovalStorage(Protocol):
    """Where approvals are kept: ``ApprovalRows`` on a ``Store``, or the standard-library
    ``Writer`` of a plain SQLite file (``closeguard.store.writer``, the command line's).
    Every state change is one conditional statement (see ``ApprovalRows``)."""

    def open_or_insert(self, values: Mapping[str, Any], now: float) -> Row: ...

    def get(self, approval_id: str) -> Row | None: ...

    def by_status(self, status: str | None, now: float, *, limit: int) -> list[Row]: ...

    def decide(
        self, approval_id: str, status: str, *, by: str, note: str | None, now: float
    ) -> bool: ...

    def due(self, now: float, *, limit: int = 500) -> tuple[str, ...]: ...

    def expire(self, approval_id: str, now: float) -> bool: ...

    def granted(self, digest: str, now: float) -> Row | None: ...

    def consume(self, approval_id: str, now: float) -> bool: ...


class Approvals:
    """Request, decide, wait for and use approvals stored in ``store``.

    ``rows`` and ``audit`` instead of a store: keep them there (the command line's
    standard-library writer); such approvals cannot ``wait``.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        audit: AuditLog | None = None,
        rows: ApprovalStorage | None = None,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        if rows is None:
            if store is None:
                raise TypeError("Approvals needs a store, or rows and an audit log")
            from closeguard.store.approvals import ApprovalRows

            rows = ApprovalRows(store)
        self._rows: ApprovalStorage = rows
        self._audit = audit

    def _from_row(self, row: Mapping[str, Any]) -> Approval:
        return from_row(row, self.clock())

    def request(
        self,
        call: Call,
        *,
        method: str,
        path: str,
        rule: str | None = None,
        reason: str | None = None,
        policy: str | None = None,
        actor: str | None = None,
        run_id: str | None = None,
        ttl: float | None = None,
        approvers: Sequence[str] = DEFAULT_APPROVERS,
    ) -> Approval:
        """A pending approval for ``call``, answerable by the ``approvers`` roles; an open
        request for the same call, by the same actor under the same policy, is reused."""
        now = self.clock()
        values = {
            "id": f"appr_{secrets.token_hex(8)}",
            "call_hash": hash_call(call, actor=actor, policy=policy),
            "status": "pending",
            "created": now,
            "expires": now + (self.ttl if ttl is None else ttl),
            "policy": policy,
            "actor": actor,
            "run_id": run_id,
            "endpoint": call.endpoint.name,
            "method": method,
            "path": path,
            "access": call.access,
            "rule": rule,
            "reason": reason,
            "args": canonical_json(redact({"body": dict(call.body), "params": dict(call.params)})),
            "approvers": json.dumps(list(approvers or DEFAULT_APPROVERS)),
        }
        found = self._from_row(self._rows.open_or_insert(values, now))
        if found.id == values["id"]:
            for listener in tuple(_LISTENERS):
                try:
                    listener(found)
                except Exception:
                    logging.getLogger(__name__).exception("approval listener failed")
        return found

    def get(self, approval_id: str) -> Approval | None:
        row = self._rows.get(approval_id)
        return self._from_row(row) if row else None

    def list(self, status: Status | None = None, *, limit: int = 100) -> list[Approval]:
        """Newest first; ``status`` filters on the effective state (expiry included)."""
        return [self._from_row(r) for r in self._rows.by_status(status, self.clock(), limit=limit)]

    def _decide(
        self,
        approval_id: str,
        status: Status,
        *,
        by: str,
        note: str | None,
        via: str,
        channel: str,
        roles: Iterable[str] | None,
        decision: str | None,
        detail: Mapping[str, Any] | None,
    ) -> Approval:
        found = self.get(approval_id)
        if found is None:
            raise ApprovalError(f"no approval {approval_id!r}")
        if roles is not None:
            held = tuple(roles)
            if set(held).isdisjoint(found.approvers):
                raise ApprovalForbidden(
                    f"approval {approval_id} may be answered by someone with the role "
                    f"{' or '.join(found.approvers)}; {by} holds {', '.join(held) or 'no role'}",
                    approvers=found.approvers,
                )
        changed = self._rows.decide(approval_id, status, by=by, note=note, now=self.clock())
        found = self.get(approval_id)
        assert found is not None
        if not changed:
            raise ApprovalError(f"approval {approval_id} is {found.status}, not pending")
        self._audit_decision(found, decision or status, by, via, channel, detail)
        return found

    def approve(
        self,
        approval_id: str,
        *,
        by: str,
        note: str | None = None,
        via: str = "program",
        channel: str = "library",
        roles: Iterable[str] | None = None,
        decision: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Approval:
        """Grant a pending approval: the exact call may now run once, until it expires.

        ``by`` is who decided, ``via`` how they were authenticated (``token``, ``oidc``,
        ``console-token``, ``cli``, ``elicitation``, ``prompt``...), ``channel`` where
        (``console``, ``api``, ``cli``, ``chat``, ``mcp``...). With ``roles`` (a person's),
        ``ApprovalForbidden`` unless one of them is among the approval's ``approvers``.
        The decision is audited as a row of its own (``decision`` overrides its label, as
        ``edited``), with ``detail`` added to the row's arguments.
        """
        return self._decide(
            approval_id,
            "approved",
            by=by,
            note=note,
            via=via,
            channel=channel,
            roles=roles,
            decision=decision,
            detail=detail,
        )

    def reject(
        self,
        approval_id: str,
        *,
        by: str,
        note: str | None = None,
        via: str = "program",
        channel: str = "library",
        roles: Iterable[str] | None = None,
        decision: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Approval:
        """Refuse a pending approval (see ``approve`` for the arguments)."""
        return self._decide(
            approval_id,
            "rejected",
            by=by,
            note=note,
            via=via,
            channel=channel,
            roles=roles,
            decision=decision,
            detail=detail,
        )

    def expire(self) -> tuple[Approval, ...]:
        """Mark pending requests past their expiry ``expired``, each audited as a decision
        of its own (by ``closeguard``, via ``expiry``): nobody answered in time. Cheap when
        nothing is due; the console, the CLI and the runtime's workers call it as they look."""
        now = self.clock()
        out: tuple[Approval, ...] = ()
        for approval_id in self._rows.due(now):
            if self._rows.expire(approval_id, now):
                found = self.get(approval_id)
                assert found is not None
                self._audit_decision(found, "expired", EXPIRY_ACTOR, "expiry", "expiry", None)
                out += (found,)
        return out

    def _audit_decision(
        self,
        a: Approval,
        decision: str,
        by: str,
        via: str,
        channel: str,
        detail: Mapping[str, Any] | None,
    ) -> None:
        """The decision's own row in the hash chain (method ``DECIDE``: no call to Close)."""
        if self._audit is None:
            if self.store is None:
                raise TypeError("approvals on rows of their own need an audit log")
            self._audit = AuditLog(self.store)
        args = {"call_hash": a.call_hash, "via": via, "channel": channel, **(detail or {})}
        row = {
            "actor": by,
            "run_id": a.run_id,
            "policy": a.policy,
            "endpoint": a.endpoint,
            "method": DECIDE,
            "path": a.path,
            "decision": decision,
            "rule": a.rule,
            "reason": a.note,
            "args": args,
            "approval_id": a.id,
        }
        self._audit.append(row, flush=True)

    def granted(self, digest: str) -> Approval | None:
        """An approved, unexpired, unused approval for this call hash, if any."""
        row = self._rows.granted(digest, self.clock())
        return self._from_row(row) if row else None

    def consume(self, approval_id: str) -> bool:
        """Use an approval up; False if it was used, revoked or expired meanwhile."""
        return self._rows.consume(approval_id, self.clock())

    async def wait(
        self,
        approval_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        poll: float = 1.0,
    ) -> Approval:
        """Poll until a person decides (or it expires); ``TimeoutError`` after ``timeout``."""
        import asyncio

        if self.store is None:
            raise TypeError("waiting for an approval needs a store")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            found = await self.store.run(self.get, approval_id)
            if found is None:
                raise ApprovalError(f"no approval {approval_id!r}")
            if found.status != "pending":
                return found
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"approval {approval_id} still pending after {timeout}s")
            delay = poll if deadline is None else max(0.0, min(poll, deadline - loop.time()))
            await asyncio.sleep(delay)
