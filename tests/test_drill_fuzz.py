"""Bad input drill: fuzzed policy, suite and workflow files. Every load either succeeds or
raises ``ConfigError`` (one clear message naming the file); nothing else escapes.

The webhook receiver's fuzz is tests/test_wf_receiver.py (``test_fuzzed_deliveries_...``).
``CLOSEGUARD_FUZZ_EXAMPLES`` sets the examples per test (60 in CI; ``make drills``: 600).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.evals.loader import load_suite
from closeguard.guardrails import Policy
from closeguard.tools.errors import ConfigError
from closeguard.workflows.loader import load_workflows

EXAMPLES = int(os.environ.get("CLOSEGUARD_FUZZ_EXAMPLES") or 60)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "grants",
                    "deny",
                    "approve",
                    "limits",
                    "per_run",
                    "lead",
                    "tasks",
                    "world",
                    "id",
                    "kind",
                    "workflow",
                    "expect",
                    "reference",
                    "constraints",
                    "*",
                    "x",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)
texts = st.one_of(
    values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def _file(text: str, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cg-fuzz-"))
    path = folder / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def _loads_or_config_error(load: Any, path: Path) -> None:
    try:
        load(path)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)


@SETTINGS
@given(text=texts)
def test_fuzzed_policy_files(text: str) -> None:
    _loads_or_config_error(Policy.load, _file(text, "policy.yaml"))


@SETTINGS
@given(data=values.filter(lambda v: isinstance(v, dict)))
def test_fuzzed_policy_mappings(data: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        Policy.from_dict(data)


@SETTINGS
@given(text=texts)
def test_fuzzed_suite_files(text: str) -> None:
    _loads_or_config_error(load_suite, _file(text, "tasks.yaml"))


@SETTINGS
@given(text=texts)
def test_fuzzed_workflow_files(text: str) -> None:
    _loads_or_config_error(load_workflows, _file(text, "flows.py"))
