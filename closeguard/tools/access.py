"""How dangerous a call is: the guard's three levels, apart from the pydantic models.

``tools.models`` re-exports it; the catalog, the guard's decision table and the policy
import it from here, so classifying a call or loading a policy without argument
constraints does not import pydantic (``closeguard catalog``, ``policy explain``).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Access"]

Access = Literal["read", "write", "destructive"]
