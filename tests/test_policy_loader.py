"""Policy files: every kind of mistake is refused with the line it is on; merging works."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeguard.guardrails import Guard, Policy, shipped_policies
from closeguard.tools.catalog import classify
from closeguard.tools.errors import ConfigError


def load_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Policy.from_yaml(text, file="p.yaml")
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("name: x\ngrants:\n  lead: [read\n", 4, "YAML syntax"),
        ("name: x\ngrant:\n  lead: read\n", 2, "unknown key 'grant'; did you mean grants"),
        ("name: x\ngrants:\n  lead: read\n  leads: write\n", 4, "unknown resource 'leads'"),
        ("name: x\ngrants:\n  lead: admin\n", 3, "level must be read, write or destructive"),
        ("grants: {lead: read}\ndeny:\n  - lead.get\n  - lead.destroy\n", 4, "unknown deny entry"),
        ("grants: {lead: read}\napprove:\n  - superuser\n", 3, "unknown approve entry"),
        (
            "grants: {task: write}\nconstraints:\n  task.make:\n    text: {in: [a]}\n",
            3,
            "unknown endpoint 'task.make'",
        ),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n    txt: {in: [a]}\n",
            4,
            "unknown field of task.create 'txt'",
        ),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n    text: {in: []}\n",
            4,
            "is empty",
        ),
        (
            "grants: {opportunity: write}\nconstraints:\n  opportunity.update:\n"
            "    confidence:\n      min: 90\n      max: 10\n",
            5,
            "min 90 > max 10",
        ),
        (
            "grants: {opportunity: write}\nconstraints:\n  opportunity.update:\n"
            "    confidence: {max: high}\n",
            4,
            "must be a number",
        ),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n    text: {max: 3}\n",
            4,
            "text is not a number field",
        ),
        (
            "grants: {activity: write}\nconstraints:\n  activity.email.create:\n"
            "    status:\n      in:\n        - draft\n        - posted\n",
            7,
            "'posted' is not a valid value for status",
        ),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n    lead_id: {scope: mine}\n",
            4,
            "unknown scope 'mine'",
        ),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n"
            "    text: {in: [a], between: 1}\n",
            4,
            "unknown rule 'between'",
        ),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n"
            "    text: {immutable: true, required: true}\n",
            4,
            "contradicts",
        ),
        (
            "grants:\n  task: read\nconstraints:\n  task.create:\n    text: {in: [a]}\n",
            5,
            "never allows task.create",
        ),
        (
            "grants: {task: write}\ndeny: [task.create]\nconstraints:\n  task.create:\n"
            "    text: {in: [a]}\n",
            5,
            "never allows task.create (deny[p.yaml:2]",
        ),
        ("grants: {task: write}\nlimits:\n  per_run:\n    writes: -1\n", 4, "count >= 0"),
        (
            "grants: {task: write}\nlimits:\n  per_window:\n    window: 1 week\n",
            4,
            "window must look like",
        ),
        (
            "grants: {task: write}\nlimits:\n  per_run:\n    per_endpoint:\n      task.add: 1\n",
            5,
            "unknown endpoint 'task.add'",
        ),
        ("grants: {task: write}\nlimits:\n  per_hour: {writes: 1}\n", 3, "unknown limits key"),
        ("name: x\nmode: yolo\n", 2, "mode must be enforce or dry_run"),
        ("name: x\ngrants: {lead: read}\ngrants: {lead: write}\n", 3, "duplicate key 'grants'"),
        ("- just\n- a list\n", 1, "a policy file is a mapping"),
    ],
)
def test_each_mistake_names_its_line(text: str, line: int, words: str) -> None:
    err = load_error(text)
    assert err.file == "p.yaml"
    assert err.line == line, str(err)
    assert words in str(err)
    assert str(err).startswith(f"p.yaml:{line}: ")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("name:\ngrants: {lead: read}\n", 1, "name must be a string"),
        ("name: x\nmode:\n", 2, "mode must be enforce or dry_run, not empty"),
        (
            "grants: {task: write}\nconstraints:\n  task.create:\n  lead_id: {scope: triggered}\n",
            3,
            "constraints.task.create maps field -> rule",
        ),
        ("grants: {task: write}\nconstraints:\n  task.create:\n    text:\n", 4, "text"),
        ("grants:\n  lead:\n", 2, "level must be read, write or destructive, not empty"),
        ("grants: {lead: read}\ndeny:\n  -\n", 3, "empty deny entry"),
        ("grants: {lead: read}\nlimits:\n  per_window:\n    window:\n", 4, "not empty"),
        ("grants: {lead: read}\nlimits:\n  per_run:\n    calls:\n", 4, "count >= 0"),
        ("name: x\n---\nname: y\n", 2, "YAML syntax"),
        ("name: !!python/object:os.system x\n", 1, "YAML syntax"),
        ("name: x\ngrants: {lead: read\n", 3, "YAML syntax"),
    ],
)
def test_empty_values_and_odd_yaml_are_config_errors(text: str, line: int, words: str) -> None:
    err = load_error(text)
    assert (err.file, err.line) == ("p.yaml", line), str(err)
    assert words in str(err) and "\n" not in str(err) and "None" not in str(err)


@pytest.mark.parametrize("text", ["", "# nothing\n", "name: empty\ngrants:\n", "grants: {}\n"])
def test_a_policy_without_grants_loads_and_grants_nothing(text: str) -> None:
    policy = Policy.from_yaml(text, file="p.yaml")
    assert policy.grants == {}
    assert Guard(policy).check(classify("GET", "/lead/")).denied


def test_an_unreadable_policy_file_is_a_config_error(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError) as info:
        Policy.load(binary)
    assert str(info.value) == f"{binary}: cannot read the policy: not UTF-8 text"


def test_extends_errors_point_into_the_file_that_has_the_mistake(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("name: base\ngrants:\n  lead: read\n  lead.x: write\n")
    (tmp_path / "child.yaml").write_text("name: child\nextends: base.yaml\n")
    with pytest.raises(ConfigError) as info:
        Policy.load(tmp_path / "child.yaml")
    assert info.value.file == str(tmp_path / "base.yaml")
    assert info.value.line == 4

    (tmp_path / "orphan.yaml").write_text("name: o\n\nextends: missing.yaml\n")
    with pytest.raises(ConfigError) as info:
        Policy.load(tmp_path / "orphan.yaml")
    assert info.value.line == 3 and "not found" in str(info.value)


def test_extends_cycle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends cycle"):
        Policy.load(tmp_path / "a.yaml")


def test_extends_merge_rules(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "name: base\nmode: dry_run\ngrants: {'*': read, task: write}\n"
        "deny: [webhook]\napprove: [task.update]\n"
        "constraints:\n  task.create:\n    text: {in: [a, b]}\n    assigned_to: {in: [u1]}\n"
        "limits:\n  per_run: {writes: 5, per_endpoint: {task.create: 2}}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "name: child\nextends: base.yaml\ngrants: {task: read, lead: write}\n"
        "deny: [lead.delete]\napprove: [lead.update]\n"
        "constraints:\n  lead.create:\n    name: {in: [Acme]}\n"
        "limits:\n  per_run: {writes: 9, per_endpoint: {lead.create: 1}}\n"
    )
    (tmp_path / "grandchild.yaml").write_text(
        "extends: child.yaml\nmode: enforce\ngrants: {task: write}\n"
        "constraints:\n  task.create:\n    text: {in: [c]}\n"
    )
    p = Policy.load(tmp_path / "grandchild.yaml")
    assert p.name == "child"
    assert p.mode == "enforce"
    assert p.grants == {"*": "read", "task": "write", "lead": "write"}
    assert p.deny == ("webhook", "lead.delete")
    assert p.approve == ("task.update", "lead.update")
    rules = {r.field: r.allowed for r in p.constraints["task.create"]}
    assert rules == {"text": ("c",), "assigned_to": ("u1",)}
    assert p.limits.per_run.writes == 9
    assert dict(p.limits.per_run.per_endpoint) == {"task.create": 2, "lead.create": 1}
    assert len(p.extends) == 2


def test_child_grant_can_narrow_a_base_grant(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("grants: {task: write}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ngrants: {task: read}\n")
    guard = Guard(Policy.load(tmp_path / "child.yaml"))
    assert guard.check(classify("POST", "/task/", {"lead_id": "lead_1"})).denied


@pytest.mark.parametrize("name", sorted(shipped_policies()))
def test_shipped_policies_load(name: str) -> None:
    policy = Policy.load(name)
    assert policy.name == name
    assert Policy.load(f"{name}.yaml") == policy


def test_shipped_sales_rep_behaviour() -> None:
    guard = Guard(Policy.load("sales-rep"))
    outbox = classify("POST", "/activity/email/", {"lead_id": "lead_1", "status": "outbox"})
    assert outbox.access == "destructive" and guard.check(outbox).denied
    draft = classify("POST", "/activity/email/", {"lead_id": "lead_1", "status": "draft"})
    assert guard.check(draft).allowed
    inbox = classify("POST", "/activity/email/", {"lead_id": "lead_1", "status": "inbox"})
    assert guard.check(inbox).rule == "constraints.activity.email.create.status"
    no_status = classify("POST", "/activity/email/", {"lead_id": "lead_1"})
    assert guard.check(no_status).denied
    assert guard.check(classify("DELETE", "/lead/lead_1/")).denied
    assert guard.check(classify("PUT", "/opportunity/oppo_1/", {"value": 5})).needs_approval
    assert guard.check(classify("POST", "/task/", {"lead_id": "lead_1"})).allowed
    assert guard.check(classify("GET", "/webhook/")).denied


def test_unknown_shipped_name_lists_the_real_ones() -> None:
    with pytest.raises(ConfigError, match="read-only"):
        Policy.load("no-such-policy")
