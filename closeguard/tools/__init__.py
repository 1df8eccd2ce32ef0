"""Typed Close tools: the endpoint catalog, resource models, the async client, errors.

This package is the bottom layer: it imports nothing else of closeguard. Its exports load
on first use (module ``__getattr__``), so importing the error tree or the catalog does not
import the client, httpx or the settings: the command line starts in a fraction of a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeguard.tools._lazy import lazy_exports
from closeguard.tools.errors import (
    AccountError,
    ApprovalError,
    ApprovalForbidden,
    ApprovalRequired,
    BadRequest,
    CloseAPIError,
    CloseConnectionError,
    CloseguardError,
    ConfigError,
    Forbidden,
    GuardError,
    InvalidArguments,
    MethodNotAllowed,
    NotFound,
    PagingLimitExceeded,
    PaymentRequired,
    PolicyViolation,
    QuotaExhausted,
    RateLimited,
    ResponseFormatError,
    ServerError,
    StoreError,
    Unauthorized,
    UnknownEndpoint,
    UnsupportedMediaType,
    UsageError,
)

if TYPE_CHECKING:
    from closeguard.tools._accessors import PageOf
    from closeguard.tools.calls import Caller
    from closeguard.tools.catalog import (
        BY_NAME,
        ENDPOINTS,
        RESOURCES,
        Call,
        Endpoint,
        classify,
        endpoint,
        find_endpoint,
    )
    from closeguard.tools.client import (
        CloseClient,
        OAuthCredentials,
        RetrySettings,
        TransportGuard,
    )
    from closeguard.tools.clock import Clock, FakeClock, SystemClock
    from closeguard.tools.settings import Settings

_LAZY = {
    "PageOf": "_accessors",
    "Caller": "calls",
    **dict.fromkeys(
        (
            "BY_NAME",
            "ENDPOINTS",
            "RESOURCES",
            "Call",
            "Endpoint",
            "classify",
            "endpoint",
            "find_endpoint",
        ),
        "catalog",
    ),
    **dict.fromkeys(
        ("CloseClient", "OAuthCredentials", "RetrySettings", "TransportGuard"), "client"
    ),
    **dict.fromkeys(("Clock", "FakeClock", "SystemClock"), "clock"),
    "Settings": "settings",
}
"""Export -> the module of this package that defines it, imported on first access."""


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BY_NAME",
    "ENDPOINTS",
    "RESOURCES",
    "AccountError",
    "ApprovalError",
    "ApprovalForbidden",
    "ApprovalRequired",
    "BadRequest",
    "Call",
    "Caller",
    "Clock",
    "CloseAPIError",
    "CloseClient",
    "CloseConnectionError",
    "CloseguardError",
    "ConfigError",
    "Endpoint",
    "FakeClock",
    "Forbidden",
    "GuardError",
    "InvalidArguments",
    "MethodNotAllowed",
    "NotFound",
    "OAuthCredentials",
    "PageOf",
    "PagingLimitExceeded",
    "PaymentRequired",
    "PolicyViolation",
    "QuotaExhausted",
    "RateLimited",
    "ResponseFormatError",
    "RetrySettings",
    "ServerError",
    "Settings",
    "StoreError",
    "SystemClock",
    "TransportGuard",
    "Unauthorized",
    "UnknownEndpoint",
    "UnsupportedMediaType",
    "UsageError",
    "classify",
    "endpoint",
    "find_endpoint",
]
