"""Typed Close tools: the endpoint catalog, resource models, the async client, errors.

This package is the bottom layer: it imports nothing else of closeguard.
"""

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
from closeguard.tools.errors import (
    ApprovalError,
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
    RateLimited,
    ResponseFormatError,
    ServerError,
    StoreError,
    Unauthorized,
    UnknownEndpoint,
    UnsupportedMediaType,
    UsageError,
)
from closeguard.tools.settings import Settings

__all__ = [
    "BY_NAME",
    "ENDPOINTS",
    "RESOURCES",
    "ApprovalError",
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
