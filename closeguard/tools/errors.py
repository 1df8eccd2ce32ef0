"""The one exception tree of closeguard, grouped in families the way httpx groups its own.

::

    CloseguardError
    ├── CloseAPIError              Close answered with an error status (.status_code, .response)
    │   ├── BadRequest             400, with Close's ``errors`` and ``field-errors``
    │   ├── Unauthorized           401
    │   ├── PaymentRequired        402
    │   ├── Forbidden              403
    │   ├── NotFound               404
    │   ├── MethodNotAllowed       405
    │   ├── UnsupportedMediaType   415
    │   ├── RateLimited            429 after retries ran out (.retry_after)
    │   └── ServerError            5xx
    ├── CloseConnectionError       no answer at all: connection refused, timeout (.request_sent)
    ├── ResponseFormatError        a success whose body cannot be read (.path, .field, .raw)
    ├── UsageError                 the caller's mistake, refused before anything is sent
    │   ├── InvalidArguments       bad arguments (also a ValueError; .errors)
    │   ├── PagingLimitExceeded    a list would page past Close's ``_skip`` maximum
    │   └── UnknownEndpoint        a request that matches no catalog endpoint
    ├── GuardError                 the guard stopped a call or cannot act on an approval
    │   ├── PolicyViolation        the guard denied a call (.decision, .rule)
    │   │   └── QuotaExhausted     a per-window limit ran out until .retry_at
    │   ├── ApprovalRequired       the guard wants a human yes first (.approval_id)
    │   ├── ApprovalError          an approval that does not exist or cannot change state
    │   │   └── ApprovalForbidden  the person holds none of the roles the approval names
    │   └── AccountError           an account that does not exist, exists already or is refused
    ├── ConfigError                bad policy / workflow / config file (.file, .line)
    │   └── WorldFileError         (closeguard.simulator) a bad simulator world file
    └── StoreError                 the store (CLOSEGUARD_STORE_URL) cannot be opened or used

Catch a family to handle every member alike (``except GuardError``: the call did not go
out because of the guard). Foreign exceptions are converted where they enter (``raise
X(...) from exc``); no name shadows httpx's (``httpx.TransportError`` is httpx's own).
Messages name the request method and path, never a credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class CloseguardError(Exception):
    """Root of every error closeguard raises on purpose."""


class CloseAPIError(CloseguardError):
    """Close (or the simulator) answered with an error status."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.method = response.request.method
        self.path = response.request.url.path

    @property
    def body(self) -> Any:
        """The decoded JSON body, or the text when it is not JSON."""
        try:
            return self.response.json()
        except ValueError:
            return self.response.text


class BadRequest(CloseAPIError):
    """400: Close rejected the input; see ``errors`` and ``field_errors``."""

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        errors: list[Any] | None = None,
        field_errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.errors = errors or []
        self.field_errors = field_errors or {}


class Unauthorized(CloseAPIError):
    """401: missing, unknown or expired credential."""


class PaymentRequired(CloseAPIError):
    """402: a plan limit was reached."""


class Forbidden(CloseAPIError):
    """403: not allowed for this user or organization."""


class NotFound(CloseAPIError):
    """404: unknown path, or an object that does not exist or is not visible."""


class MethodNotAllowed(CloseAPIError):
    """405: the path exists but not with this method."""


class UnsupportedMediaType(CloseAPIError):
    """415: the body was not JSON."""


class RateLimited(CloseAPIError):
    """429 that survived every retry."""

    def __init__(self, message: str, *, response: httpx.Response, retry_after: float) -> None:
        super().__init__(message, response=response)
        self.retry_after = retry_after


class ServerError(CloseAPIError):
    """5xx from Close."""


class CloseConnectionError(CloseguardError):
    """The request got no HTTP answer (refused, timed out, connection dropped)."""

    def __init__(self, message: str, *, method: str, path: str, request_sent: bool) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.request_sent = request_sent


class ResponseFormatError(CloseguardError):
    """Close answered with success, but the body cannot be read as the endpoint's result.

    Not JSON at all (``field`` is None), or a value of a type no model accepts (``field``
    names it, dotted). The call went through: a write may have been applied. ``raw`` holds
    the decoded JSON (or the text), ``errors`` pydantic's error list when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        raw: Any,
        field: str | None = None,
        errors: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.raw = raw
        self.field = field
        self.errors = errors or []


class UsageError(CloseguardError):
    """The caller asked for something that cannot be sent; nothing reached Close."""


class InvalidArguments(UsageError, ValueError):
    """Arguments refused before anything was sent (a misspelt field, a wrong type).

    Also a ``ValueError`` so callers validating input can catch it as such; ``errors`` holds
    pydantic's error list and ``__cause__`` the original ``ValidationError``.
    """

    def __init__(self, message: str, *, operation: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.errors = errors or []


class PagingLimitExceeded(UsageError):
    """Walking a list would need a ``_skip`` past Close's maximum; narrow the query instead."""

    def __init__(self, message: str, *, operation: str, skip: int, max_skip: int) -> None:
        super().__init__(message)
        self.operation = operation
        self.skip = skip
        self.max_skip = max_skip


class UnknownEndpoint(UsageError):
    """A method and path that no catalog endpoint describes."""

    def __init__(self, method: str, path: str, allowed: tuple[str, ...] = ()) -> None:
        hint = f" (this path accepts {', '.join(allowed)})" if allowed else ""
        super().__init__(f"{method} {path} is not a Close endpoint in the catalog{hint}")
        self.method = method
        self.path = path
        self.allowed = allowed


class GuardError(CloseguardError):
    """The guard stopped a call, or cannot do what was asked of an approval."""


class PolicyViolation(GuardError):
    """The guard denied a call. ``decision`` is the guard's Decision, ``rule`` what denied it."""

    def __init__(self, message: str, *, decision: Any = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.decision = decision
        self.rule = rule


class QuotaExhausted(PolicyViolation):
    """A per-window limit of the policy ran out: the call may go after ``retry_at`` (epoch
    seconds, when the window ends). A workflow run waits for it instead of failing."""

    def __init__(
        self, message: str, *, retry_at: float, decision: Any = None, rule: str | None = None
    ) -> None:
        super().__init__(message, decision=decision, rule=rule)
        self.retry_at = retry_at


class ApprovalRequired(GuardError):
    """The call needs a human yes; ``approval_id`` names the pending approval."""

    def __init__(self, message: str, *, approval_id: str, decision: Any = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.decision = decision


class ApprovalError(GuardError):
    """An approval that does not exist or cannot change state any more."""


class ApprovalForbidden(ApprovalError):
    """The person holds none of the roles that may answer this approval (``.approvers``)."""

    def __init__(self, message: str, *, approvers: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.approvers = approvers


class AccountError(GuardError):
    """An account that does not exist, exists already, or cannot be used as asked."""


class ConfigError(CloseguardError):
    """A policy, workflow or config file is wrong; ``file`` and ``line`` say where."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{message}")
        self.file = file
        self.line = line
        self.reason = message


class StoreError(CloseguardError):
    """The durable store cannot be opened or used (bad URL, database down, no driver)."""


STATUS_ERRORS: dict[int, type[CloseAPIError]] = {
    400: BadRequest,
    401: Unauthorized,
    402: PaymentRequired,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    415: UnsupportedMediaType,
    429: RateLimited,
}


def error_class_for(status_code: int) -> type[CloseAPIError]:
    """The exception class for an HTTP error status."""
    if status_code >= 500:
        return ServerError
    return STATUS_ERRORS.get(status_code, CloseAPIError)
