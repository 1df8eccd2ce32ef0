"""What a role may be called: shared by accounts (their roles) and policies (approvers).

A module of its own, so loading a policy does not import the accounts' store.
"""

from __future__ import annotations

import re

__all__ = ["ROLE"]

ROLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
