"""closeguard: AI agents and sales-ops workflows on Close CRM, behind a guard.

Packages, lowest first (imports only point down this list):
``tools`` (catalog, models, client), ``store`` (durable tables), ``guardrails`` (policies,
decisions, audit), ``simulator`` (a Close organization in-process), ``agent`` (LangGraph),
``workflows`` (packaged rules and their runtime), ``evals`` (suites and grading), ``cli``.
"""

from closeguard.tools.errors import (
    ApprovalRequired,
    CloseAPIError,
    CloseConnectionError,
    CloseguardError,
    ConfigError,
    GuardError,
    PolicyViolation,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "ApprovalRequired",
    "CloseAPIError",
    "CloseConnectionError",
    "CloseguardError",
    "ConfigError",
    "GuardError",
    "PolicyViolation",
    "UsageError",
    "__version__",
]
