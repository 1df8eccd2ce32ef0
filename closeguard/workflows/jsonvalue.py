"""``to_json``: a step's value as the effect journal stores and gives it back.

Apart from ``effects`` (which imports the store) so that rules, which keep their step
results the same way, load without SQLAlchemy: ``closeguard workflows list`` does not need
the store (issue 23).
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any

__all__ = ["to_json"]


def _plain(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    pydantic = sys.modules.get("pydantic")  # a model implies it: never imported for a date
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return str(value)


def to_json(value: Any) -> Any:
    """``value`` exactly as the journal gives it back: JSON data (pydantic models dumped,
    dates in ISO format, tuples as lists, anything else as its string)."""
    return json.loads(json.dumps(value, default=_plain))
