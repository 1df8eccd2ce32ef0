"""Conditions on values (``closeguard.guardrails.conditions``): parsing, errors with file and
line, decisions against a reference evaluator, and the YAML form shown back."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeguard.guardrails._yaml import load_yaml
from closeguard.guardrails.conditions import describe, parse_condition
from closeguard.tools.errors import ConfigError


def cond(text: str, **kw: Any) -> Any:
    data, lines = load_yaml(text, "rule.yaml")
    return parse_condition(data, lines, **kw)


def test_the_issue_example_decides_on_value_or_status_type() -> None:
    c = cond("{any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]}")
    assert c.evaluate({"value": 6_000_000})
    assert c.evaluate({"value": 100, "status_type": "won"})
    assert not c.evaluate({"value": 4_999_999, "status_type": "active"})
    assert not c.evaluate({"note": "no value sent"})
    assert describe(c) == "{any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]}"


def test_a_field_the_call_does_not_send_does_not_match() -> None:
    assert not cond("{value: {max: 10}}").evaluate({})
    assert not cond("{value: {not_in: [1]}}").evaluate({"value": None})
    assert cond("{value: {required: false}}").evaluate({})
    assert not cond("{value: {required: true}}").evaluate({"value": None})


def test_several_fields_all_hold_and_not_negates() -> None:
    c = cond("{value: {min: 1}, status_id: {in: [stat_a, stat_b]}}")
    assert c.evaluate({"value": 2, "status_id": "stat_b"})
    assert not c.evaluate({"value": 2, "status_id": "stat_c"})
    assert describe(c) == "{value: {min: 1}, status_id: {in: [stat_a, stat_b]}}"
    n = cond("{not: {status_id: {in: [stat_a]}}}")
    assert n.evaluate({"status_id": "stat_b"}) and not n.evaluate({"status_id": "stat_a"})


def test_dotted_fields_numbers_as_text_and_patterns() -> None:
    c = cond("{previous_data.value: {min: 100000}, data.name: {matches: '^Acme'}}")
    assert c.evaluate({"previous_data": {"value": "150000"}, "data": {"name": "Acme Inc"}})
    assert not c.evaluate({"previous_data": {"value": "1e3"}, "data": {"name": "Acme"}})
    assert not c.evaluate({"previous_data": {"value": 200000}, "data": {"name": "The Acme"}})
    assert c.fields() == {"previous_data.value", "data.name"}


def test_true_is_not_one() -> None:
    assert not cond("{flag: {equals: 1}}").evaluate({"flag": True})
    assert cond("{flag: {equals: true}}").evaluate({"flag": True})
    assert not cond("{n: {min: 0}}").evaluate({"n": True})


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("when: []", 1, "a condition is a mapping"),
        ("when:\n  value: {mni: 3}", 2, "unknown matcher 'mni'"),
        ("when:\n  any: []", 2, "any takes a non-empty list"),
        ("when:\n  value: {min: '3'}", 2, "value.min must be a number"),
        ("when:\n  value: {min: 5, max: 1}", 2, "min 5 > max 1"),
        ("when:\n  any:\n    - {name: {matches: '('}}", 3, "bad regular expression"),
        ("when:\n  value: {required: yes please}", 2, "must be true or false"),
        ("when:\n  valeu: {min: 1}", 2, "unknown field 'valeu'"),
        ("when:\n  value: {any: [1]}", 2, "combine conditions, not matchers"),
        ("when:\n  value: 5", 2, "matchers are a mapping"),
    ],
)
def test_mistakes_are_one_line_with_file_and_line(text: str, line: int, message: str) -> None:
    data, lines = load_yaml(text, "rule.yaml")
    with pytest.raises(ConfigError) as info:
        parse_condition(data["when"], lines, ("when",), known_fields=["value", "name", "n"])
    assert info.value.file == "rule.yaml" and info.value.line == line
    assert message in str(info.value) and "\n" not in str(info.value)


# Reference evaluator: the documented semantics written out plainly, on flat data.
def matches(kind: str, arg: Any, present: bool, v: Any) -> bool:
    if kind == "required":
        return bool(present == arg)
    if not present:
        return False
    num = v if isinstance(v, int) and not isinstance(v, bool) else None
    if kind == "in":
        return v in arg and not isinstance(v, bool)
    if kind == "not_in":
        return v not in arg or isinstance(v, bool)
    if kind == "equals":
        return bool(v == arg) and not isinstance(v, bool)
    if kind in ("min", "max"):
        return num is not None and (num >= arg if kind == "min" else num <= arg)
    return isinstance(v, str) and re.search(arg, v) is not None


def reference(raw: dict[str, Any], data: dict[str, Any]) -> bool:
    results = []
    for key, value in raw.items():
        if key == "all":
            results.append(all(reference(v, data) for v in value))
        elif key == "any":
            results.append(any(reference(v, data) for v in value))
        elif key == "not":
            results.append(not reference(value, data))
        else:
            present = data.get(key) is not None
            results += [matches(k, a, present, data.get(key)) for k, a in value.items()]
    return all(results)


FIELDS = ["value", "status_id", "name"]
values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "ab", "c"])
)
matcher = st.one_of(
    st.tuples(st.just("in"), st.lists(st.integers(-5, 5) | st.sampled_from("abc"), min_size=1)),
    st.tuples(st.just("not_in"), st.lists(st.integers(-5, 5), min_size=1)),
    st.tuples(st.just("equals"), st.integers(-5, 5) | st.sampled_from(["a", "ab"])),
    st.tuples(st.just("min"), st.integers(-5, 5)),
    st.tuples(st.just("max"), st.integers(-5, 5)),
    st.tuples(st.just("matches"), st.sampled_from(["^a", "b$", "c"])),
    st.tuples(st.just("required"), st.booleans()),
)
leaf = st.builds(
    lambda f, ms: {f: dict(ms)}, st.sampled_from(FIELDS), st.lists(matcher, min_size=1, max_size=2)
)
conditions = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(conditions, st.dictionaries(st.sampled_from(FIELDS), values))
def test_decides_like_the_reference_evaluator(raw: dict[str, Any], data: dict[str, Any]) -> None:
    try:
        parsed = parse_condition(raw)
    except ConfigError:
        return
    assert parsed.evaluate(data) == reference(raw, data)
    assert parse_condition(parsed.as_yaml()).evaluate(data) == parsed.evaluate(data)
