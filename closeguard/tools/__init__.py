"""Typed Close tools: the endpoint catalog, resource models, the async client, errors.

This package is the bottom layer: it imports nothing else of closeguard.
"""

from closeguard.tools._accessors import PageOf
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
from closeguard.tools.errors import (
    BadRequest,
    CloseAPIError,
    CloseguardError,
    Forbidden,
    InvalidArguments,
    MethodNotAllowed,
    NotFound,
    PagingLimitExceeded,
    PaymentRequired,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    UnknownEndpoint,
    UnsupportedMediaType,
)
from closeguard.tools.settings import Settings

__all__ = [
    "BY_NAME",
    "ENDPOINTS",
    "RESOURCES",
    "BadRequest",
    "Call",
    "CloseAPIError",
    "CloseClient",
    "CloseguardError",
    "Endpoint",
    "Forbidden",
    "InvalidArguments",
    "MethodNotAllowed",
    "NotFound",
    "OAuthCredentials",
    "PageOf",
    "PagingLimitExceeded",
    "PaymentRequired",
    "RateLimited",
    "RetrySettings",
    "ServerError",
    "Settings",
    "TransportError",
    "TransportGuard",
    "Unauthorized",
    "UnknownEndpoint",
    "UnsupportedMediaType",
    "classify",
    "endpoint",
    "find_endpoint",
]
