"""What a role may be called, and who answers an approval by default: shared by accounts
(their roles), policies (approvers) and approvals.

A module of its own, so loading a policy does not import the accounts' store, and reading
approvals does not import the policy and the catalog.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_APPROVERS", "ROLE"]

ROLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DEFAULT_APPROVERS: tuple[str, ...] = ("admin",)
"""The roles that answer an approval when its policy names none."""
