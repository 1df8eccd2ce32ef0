"""The policies shipped with closeguard, by name, with their descriptions.

Apart from ``policy`` (which re-exports it) so that listing them reads YAML only: loading
a policy needs the catalog and its pydantic models, listing names does not
(``closeguard policy list``).
"""

from __future__ import annotations

from importlib import resources as importlib_resources
from importlib.resources.abc import Traversable

import yaml

__all__ = ["shipped_file", "shipped_policies"]

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def shipped_file(name: str) -> Traversable:
    """Where the shipped policy ``name`` is (it may not exist)."""
    return importlib_resources.files("closeguard.guardrails") / "policies" / f"{name}.yaml"


def shipped_policies() -> dict[str, str]:
    """Shipped policy names and their one-line descriptions."""
    out = {}
    root = importlib_resources.files("closeguard.guardrails") / "policies"
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            try:
                data = yaml.load(item.read_text(encoding="utf-8"), Loader=_LOADER)
            except yaml.YAMLError:
                data = None
            desc = data.get("description") if isinstance(data, dict) else None
            out[item.name.removesuffix(".yaml")] = " ".join(str(desc or "").split())
    return out
