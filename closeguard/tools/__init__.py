"""Typed Close tools: the endpoint catalog, resource models, the async client, errors.

This package is the bottom layer: it imports nothing else of closeguard.
"""

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
from closeguard.tools.errors import (
    BadRequest,
    CloseAPIError,
    CloseguardError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
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
    "CloseguardError",
    "Endpoint",
    "Forbidden",
    "MethodNotAllowed",
    "NotFound",
    "PaymentRequired",
    "RateLimited",
    "ServerError",
    "Settings",
    "TransportError",
    "Unauthorized",
    "UnknownEndpoint",
    "UnsupportedMediaType",
    "classify",
    "endpoint",
    "find_endpoint",
]
