"""Loading rules: every kind of mistake is one ConfigError line with the file and line,
never a traceback, including for generated broken rules (hypothesis)."""

from __future__ import annotations

import copy
import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.tools import ConfigError
from closeguard.workflows import ManualTrigger, ScheduleTrigger, load_workflows
from closeguard.workflows.rules import RuleTrigger, load_rules_text, parse_rules
from closeguard.workflows.rules.template import Template

GOOD = """\
name: big-deal-follow-up
description: A deal over 1,000 USD changes status -> a task on its lead.
on: opportunity.updated          # read as the key "on", not YAML 1.1's boolean
changed: [status_id]
if:
  value: {min: 100000}           # cents, as Close keeps them
steps:
  - create: task
    fields:
      lead_id: "{{ event.lead_id }}"
      text: "Big deal on {{ lead.display_name }}: follow up"
      date: "{{ business_days(2) }}"
"""


def test_the_issue_example_loads_with_on_read_as_the_key() -> None:
    [workflow] = load_rules_text(GOOD, "big.yaml")
    assert isinstance(workflow.trigger, RuleTrigger)
    assert workflow.trigger.object_type == "opportunity" and workflow.trigger.action == "updated"
    assert workflow.trigger.changed_fields == ("status_id",)
    event = {
        "object_type": "opportunity",
        "action": "updated",
        "changed_fields": ["status_id"],
        "data": {"value": 150_000},
    }
    assert workflow.trigger.matches(event)
    assert not workflow.trigger.matches({**event, "data": {"value": 99_999}})
    assert not workflow.trigger.matches({**event, "changed_fields": ["value"]})


def test_schedules_manual_triggers_and_lists_of_rules() -> None:
    text = """
    - name: weekday
      every: "0 8 * * 1-5"
      timezone: Europe/Paris
      steps: [{find: lead, where: {query: "x"}}]
    - name: hourly
      every: 1h
      steps: [{find: lead}]
    - name: by-hand
      on: manual
      required: [who]
      steps: [{find: user, id: "{{ params.who }}"}]
    """
    weekday, hourly, by_hand = load_rules_text(textwrap.dedent(text))
    assert isinstance(weekday.trigger, ScheduleTrigger)
    assert weekday.trigger.cron == "0 8 * * 1-5" and weekday.trigger.timezone == "Europe/Paris"
    assert isinstance(hourly.trigger, ScheduleTrigger) and hourly.trigger.every is not None
    assert by_hand.trigger == ManualTrigger(("who",))


MISTAKES = [
    ("name: x\nsteps: [{find: lead}]\n", 1, "a rule needs exactly one trigger"),
    ("name: x\non: lead.created\nevery: 1h\nsteps: [{find: lead}]\n", 1, "exactly one trigger"),
    ("name: X Y\non: lead.created\nsteps: [{find: lead}]\n", 1, "a rule needs name: in lowercase"),
    (
        "name: x\non: lead.craeted\nsteps: [{find: lead}]\n",
        2,
        "unknown event 'lead.craeted'; did you mean lead.created",
    ),
    ("name: x\non: lead.created\nstep: []\n", 3, "unknown key 'step'; did you mean steps?"),
    ("name: x\non: lead.created\nsteps: []\n", 3, "steps is a non-empty list"),
    ("name: x\non: lead.created\nsteps: [{creat: task}]\n", 3, "a step has exactly one of"),
    (
        "name: x\non: lead.created\nsteps:\n  - create: tsak\n    fields: {text: a}\n",
        4,
        "unknown resource to create 'tsak'; did you mean task?",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - create: task\n    fields: {txt: a}\n",
        5,
        "unknown field of task.create 'txt'; did you mean text?",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - create: task\n    fields: {text: '{{ leed.id }}'}\n",  # noqa: E501
        5,
        "uses 'leed', which is not defined here",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - create: task\n    fields: {text: '{{ 1 + }}'}\n",
        5,
        "template '{{ 1 + }}'",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - create: task\n    fields: {text: '{{ lead.id | shout }}'}\n",  # noqa: E501
        5,
        "No filter named 'shout'",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - create: task\n    fields: {text: 'a {{ lead.id is odd_ish }}'}\n",  # noqa: E501
        5,
        "No test named 'odd_ish'",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - create: task\n    fields: {text: '{{- lead.id -}}'}\n",  # noqa: E501
        5,
        "template '{{- lead.id -}}'",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - update: lead\n    fields: {name: a}\n",
        4,
        "needs id:",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - delete: lead\n    id: '{{ data.id }}'\n    fields: {a: 1}\n",  # noqa: E501
        6,
        "unknown key for a delete step 'fields'",
    ),
    (
        "name: x\non: lead.created\nif: {value: {minimum: 3}}\nsteps: [{find: lead}]\n",
        3,
        "if: value: unknown matcher 'minimum'",
    ),
    (
        "name: x\nevery: 1h\nif: {value: {min: 3}}\nsteps: [{find: lead}]\n",
        3,
        "if: looks at an event's data",
    ),
    ("name: x\nevery: '0 25 * * *'\nsteps: [{find: lead}]\n", 2, "every: not a crontab line"),
    (
        "name: x\nevery: '0 8 * * *'\ntimezone: Mars/Base\nsteps: [{find: lead}]\n",
        3,
        "unknown timezone 'Mars/Base'",
    ),
    (
        "name: x\non: lead.created\npolicy: {grants: {lead: write}}\nsteps: [{find: lead}]\n",
        3,
        "never widen it",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - find: lead\n    as: a\n  - find: user\n    as: a\n",
        7,
        "step name 'a' is already used on line 4",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - find: lead\n    as: data\n",
        5,
        "'data' is a name every template already has",
    ),
    ("name: x\non: lead.created\nsteps:\n  - agent: hi\n", 4, "an agent step needs policy:"),
    (
        "name: x\non: lead.created\nsteps:\n  - agent: hi\n    policy: no-such-policy\n",
        5,
        "no policy file or shipped policy named 'no-such-policy'",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - llm: hi\n    output: {a: money}\n",
        5,
        "unknown output type 'money'",
    ),
    (
        "name: x\non: lead.created\nsteps:\n  - for_each: '{{ [1] }}'\n    steps: [{create: task, fields: {text: a}}]\n",  # noqa: E501
        4,
        "needs limit:",
    ),
    (
        "name: x\non: lead.created\nlimits: {per_run: {writes: 5}}\nsteps:\n  - create: task\n    fields: {text: a}\n",  # noqa: E501
        3,
        "limits.per_run.writes: 5 is more than the steps need (1)",
    ),
    ("name: x\non: lead.created\nsteps: [{find: lead}]\nname: y\n", 4, "duplicate key 'name'"),
    ("name: x\non: [lead.created\n", 3, "YAML syntax"),
    (
        "- name: a\n  on: lead.created\n  steps: [{find: lead}]\n- name: a\n  on: lead.created\n  steps: [{find: lead}]\n",  # noqa: E501
        4,
        "rule name 'a' is already used on line 1",
    ),
    ("just text\n", 1, "a rule file holds one rule"),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_each_mistake_is_one_line_with_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules_text(text, "rules.yaml")
    assert caught.value.file == "rules.yaml" and caught.value.line == line, str(caught.value)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_loads_rules_beside_modules_and_leaves_policies_alone(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(GOOD)
    (tmp_path / "my-policy.yaml").write_text("name: mine\ngrants: {lead: read}\n")
    assert set(load_workflows(tmp_path)) == {"big-deal-follow-up"}
    (tmp_path / "again.yml").write_text(GOOD)
    with pytest.raises(ConfigError) as caught:
        load_workflows(tmp_path)
    assert "workflow name 'big-deal-follow-up' is already used in" in str(caught.value)


# -- generated broken rules --------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
BASES: list[dict[str, Any]] = [
    yaml.safe_load(text.replace("\non:", "\n'on':"))
    for text in [
        GOOD,
        *(p.read_text() for p in sorted((ROOT / "closeguard/workflows/library/rules").glob("*"))),
        *(p.read_text() for p in sorted((ROOT / "examples/rules").glob("*.yaml"))),
    ]
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**7),
    st.text(max_size=12),
    st.sampled_from(
        ["{{ x", "{{ data.id }}", "task", "lead.created", "0 8 * * *", "{% for %}", "on"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*at, i))
    return out


@st.composite
def broken(draw: st.DrawFn) -> str:
    rule = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(rule) if p]
        path = draw(st.sampled_from(paths))
        parent = rule
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    text = yaml.safe_dump(rule, sort_keys=False)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", ":", "\n  - ", "{", "'"])) + text[cut:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken())
def test_generated_broken_rules_never_raise_anything_but_a_config_error(text: str) -> None:
    try:
        parse_rules(text, "gen.yaml")
        load_rules_text(text, "gen.yaml")
    except ConfigError as exc:
        assert exc.file is not None and exc.file.startswith(("gen.yaml", "<")), str(exc)
        assert "\n" not in exc.reason and "Traceback" not in str(exc)


def test_templates_are_checked_when_rules_load_and_compiled_when_first_rendered() -> None:
    """Loading (``workflows list``, validation) compiles no template; the first render
    compiles it once."""
    [workflow] = load_rules_text(
        "name: x\non: lead.created\nsteps:\n  - create: task\n"
        "    fields: {text: 'Call {{ lead.display_name }}', date: '{{ 2 * 3 }}'}\n",
        "rules.yaml",
    )
    templates = [v for v in _values(workflow) if isinstance(v, Template)]
    assert {t.source for t in templates} == {"Call {{ lead.display_name }}", "{{ 2 * 3 }}"}
    assert all("compiled" not in vars(t) for t in templates)
    text, number = sorted(templates, key=lambda t: t.native)
    assert text.render({"lead": {"display_name": "Acme"}}) == "Call Acme"
    assert number.render({}) == 6
    compiled = text.compiled
    assert text.render({"lead": {"display_name": "Bo"}}) == "Call Bo" and text.compiled is compiled


def _values(value: Any) -> list[Any]:
    """Every value reachable from ``value`` through dataclass fields, lists and mappings."""
    if isinstance(value, Template):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [v for f in dataclasses.fields(value) for v in _values(getattr(value, f.name))]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _values(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _values(item)]
    return []


def test_the_packaged_rules_pass_the_crontab_check_they_skip_at_load(tmp_path: Path) -> None:
    """Loading the packaged rules skips only the crontab check (it imports APScheduler);
    here each file passes it, and the same text outside the package is checked."""
    from closeguard.workflows.loader import RULES
    from closeguard.workflows.rules import read_rules

    files = sorted(RULES.glob("*.yaml"))
    crons = 0
    for file in files:
        checked = read_rules(file)
        assert read_rules(file, packaged=True) == checked
        crons += sum(
            isinstance(r.trigger, ScheduleTrigger) and r.trigger.cron is not None
            for r, _ in checked
        )
    assert files and crons
    broken = tmp_path / "nudge.yaml"
    text = (RULES / "stale-opportunity-nudge.yaml").read_text()
    broken.write_text(text.replace("0 8 * * *", "0 25 * * *"))
    assert "0 25 * * *" in broken.read_text()
    with pytest.raises(ConfigError, match="not a crontab line"):
        read_rules(broken)
    assert read_rules(broken, packaged=True)  # the one check packaged=True leaves out
