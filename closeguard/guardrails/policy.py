"""Policy files: who may call what, with which arguments, how often, and with whose yes.

A policy is a YAML file, one per agent or workflow::

    name: sales-rep
    extends: read-only            # a shipped policy name or a file path (relative to this one)
    mode: enforce                 # or dry_run: decide and log, never send a write
    grants:                       # resource (or "*") -> read | write | destructive
      lead: write
      activity.email: write
    deny: [lead.delete, custom_field]          # endpoint names, resources or access levels
    approve:                                    # the same kinds of entries, or a mapping
      - destructive
      - endpoint: opportunity.update            # (or resource: / access:)
        when: {any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]}
    approvers:                                  # who may answer each approve entry
      opportunity.update: [sales-manager]
      default: [admin]                          # every other approve entry (the default)
    constraints:                  # endpoint -> field -> rule
      activity.email.create:
        status: {in: [draft], required: true}
      task.create:
        lead_id: {scope: triggered}
        text: {immutable: true}
      opportunity.update:
        confidence: {min: 0, max: 90}
    limits:
      per_run: {calls: 500, writes: 20, destructive: 0, per_endpoint: {task.create: 5}}
      per_window: {window: 1h, writes: 100, per_endpoint: {task.create: 50}}

Decision order for one call (see ``Guard``): ``deny`` entries, then ``grants``, then
zero limits, then ``constraints``, then ``approve``; quotas are counted at the transport.

- grants: the most specific grant wins: ``activity.email`` before ``activity`` before
  ``"*"``. ``write`` implies ``read``; ``destructive`` implies both. Nothing granted means
  denied.
- deny / approve entries match an endpoint by its name, by its resource or any ancestor
  (``activity`` matches ``activity.note.create``), or by access level at or above
  (``write`` matches write and destructive calls). An entry written as a mapping may carry
  ``when:``, a condition on the call's arguments (``closeguard.guardrails.conditions``):
  the entry applies only to calls that meet it, and a call that does not goes on as if the
  entry were not there. A condition on a field the call does not send does not hold.
  ``status_label`` and ``status_type`` name the status the call sets by ``status_id``
  (lead or opportunity statuses, read from Close once). Rules are labelled by the file and
  line that wrote them (``approve[sales-rep.yaml:14]``).
- approvers: the roles that may answer an approve entry, keyed by the entry as written
  (``opportunity.update``), ``default`` for the others (``[admin]`` when unset); an entry
  written as a mapping may name its own ``approvers:``. When several approve entries cover
  a call, the first that applies names the roles.
- constraint rules: ``in`` / ``in_list`` (allowed values), ``min`` / ``max`` (numbers),
  ``immutable: true`` (the field may not be sent), ``scope: triggered`` (the value must be
  one of the run's triggered lead ids; implies required), ``required: true``. A field that
  is not sent passes ``in``/``min``/``max``. Fields are checked wherever the endpoint
  defines them: body, query or path parameter (``id``).
- limits: ``per_run`` counts per run id; ``per_window`` counts per policy name in fixed
  windows (``window``: ``30s``, ``15m``, ``1h``, ``1d``) in the store. ``calls`` counts every
  call, ``writes`` write and destructive calls, ``destructive`` destructive calls,
  ``per_endpoint`` calls of that endpoint. A retried attempt of one logical call counts once.

``extends`` merge rules (base first, then each child on top):
``name``, ``description`` and ``mode``: the child's when it sets them. ``grants``: per
resource, the child's level replaces the base's. ``deny`` and ``approve``: the union (a
child cannot lift a base's deny). ``approvers``: per key, the child's roles replace the
base's. ``constraints``: per endpoint and field, the child's rule
replaces the base's. ``limits``: per key, the child's number replaces the base's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from closeguard.guardrails._shipped import shipped_file, shipped_policies
from closeguard.guardrails._yaml import Lines, load_yaml, shown
from closeguard.guardrails.conditions import Condition, describe, parse_condition
from closeguard.guardrails.roles import DEFAULT_APPROVERS, ROLE
from closeguard.guardrails.static import possible_access, static_decisions
from closeguard.tools.access import Access
from closeguard.tools.catalog import (
    ACCESS_RANK,
    BY_NAME,
    RESOURCES,
    Endpoint,
    resource_ancestors,
)
from closeguard.tools.errors import ConfigError
from closeguard.tools.fields import ARGUMENTS, accepts

__all__ = [
    "DEFAULT_APPROVERS",
    "KNOWN_RESOURCES",
    "STATUS_FIELDS",
    "Counters",
    "Entry",
    "FieldRule",
    "Limits",
    "Mode",
    "Origin",
    "Policy",
    "shipped_policies",
]

Mode = Literal["enforce", "dry_run"]
Location = Literal["body", "params", "path"]
KNOWN_RESOURCES: frozenset[str] = frozenset(a for r in RESOURCES for a in resource_ancestors(r)) | {
    "*"
}
TOP_KEYS = (
    "name",
    "description",
    "extends",
    "mode",
    "grants",
    "deny",
    "approve",
    "approvers",
    "constraints",
    "limits",
)
ENTRY_KINDS = ("endpoint", "resource", "access")
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter where PyYAML has it: rules derive policies through ``from_dict``."""
STATUS_FIELDS = ("status_label", "status_type")
"""Fields a ``when`` may name beside an endpoint's own: the status ``status_id`` sets."""
RULE_KEYS = ("in", "in_list", "min", "max", "immutable", "scope", "required")
COUNTER_KEYS = ("calls", "writes", "destructive", "per_endpoint")
SCOPES = ("triggered",)
_WINDOW = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class Origin:
    """Where a piece of policy was written."""

    file: str
    line: int


@dataclass(frozen=True)
class Entry:
    """One ``deny`` or ``approve`` entry: what it matches, its ``when`` and, for approve,
    the roles that may answer it."""

    kind: Literal["deny", "approve"]
    match: str
    when: Condition | None = None
    approvers: tuple[str, ...] = ()
    origin: Origin | None = dataclasses.field(default=None, compare=False)

    @property
    def label(self) -> str:
        """The rule's name in decisions and audit rows: the file and line that wrote it."""
        if self.origin is None:
            return f"{self.kind}[{self.match}]"
        return f"{self.kind}[{Path(self.origin.file).name}:{self.origin.line}]"

    def describe(self) -> str:
        """The entry as written, its condition in YAML's own form."""
        return self.match if self.when is None else f"{self.match} when {describe(self.when)}"


@dataclass(frozen=True)
class FieldRule:
    """One argument rule on one field of one endpoint."""

    endpoint: str
    field: str
    locations: tuple[Location, ...]
    allowed: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    immutable: bool = False
    scope: str | None = None
    required: bool = False
    origin: Origin | None = dataclasses.field(default=None, compare=False)

    @property
    def rule(self) -> str:
        return f"constraints.{self.endpoint}.{self.field}"

    @property
    def typed(self) -> bool:
        """Whether the rule compares numbers or booleans (query text must be converted)."""
        return (
            self.min is not None
            or self.max is not None
            or (self.allowed is not None and any(not isinstance(v, str) for v in self.allowed))
        )

    def describe(self) -> str:
        parts = []
        if self.allowed is not None:
            parts.append(f"in {list(self.allowed)}")
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.immutable:
            parts.append("may not be sent")
        if self.scope:
            parts.append(f"scope {self.scope}")
        if self.required:
            parts.append("required")
        return f"{self.field}: {', '.join(parts)}"


@dataclass(frozen=True)
class Counters:
    calls: int | None = None
    writes: int | None = None
    destructive: int | None = None
    per_endpoint: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return (
            self.calls is None
            and self.writes is None
            and self.destructive is None
            and not self.per_endpoint
        )


@dataclass(frozen=True)
class Limits:
    per_run: Counters = field(default_factory=Counters)
    per_window: Counters = field(default_factory=Counters)
    window_seconds: int = 3600


@dataclass(frozen=True)
class Policy:
    """A loaded, validated, merged policy. Build with ``Policy.load`` or ``Policy.from_yaml``."""

    name: str
    grants: Mapping[str, Access] = field(default_factory=dict)
    deny_rules: tuple[Entry, ...] = ()
    approve_rules: tuple[Entry, ...] = ()
    constraints: Mapping[str, tuple[FieldRule, ...]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    mode: Mode = "enforce"
    description: str = ""
    file: str | None = None
    extends: tuple[str, ...] = ()
    approvers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The merged ``approvers:`` map as written (``default`` included when set)."""

    @property
    def deny(self) -> tuple[str, ...]:
        """What each deny entry matches, in order (conditional entries included)."""
        return tuple(e.match for e in self.deny_rules)

    @property
    def approve(self) -> tuple[str, ...]:
        """What each approve entry matches, in order (conditional entries included)."""
        return tuple(e.match for e in self.approve_rules)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | Path) -> Policy:
        """Load a policy file, or a shipped policy by name (``read-only``, ``sales-rep``…)."""
        text, label, base_dir = _read_source(source, None)
        return _Loader().load(text, label, base_dir)

    @classmethod
    def from_yaml(
        cls, text: str, *, file: str = "<policy>", base_dir: Path | None = None
    ) -> Policy:
        return _Loader().load(text, file, base_dir or Path.cwd())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, file: str = "<policy>") -> Policy:
        text = yaml.dump(dict(data), Dumper=_DUMPER, sort_keys=False)
        return cls.from_yaml(text, file=file)


def _read_source(source: str | Path, base_dir: Path | None) -> tuple[str, str, Path | None]:
    """Text, label and the folder relative ``extends`` resolve against."""
    raw = str(source)
    looks_like_file = isinstance(source, Path) or raw.endswith((".yaml", ".yml")) or "/" in raw
    if looks_like_file:
        path = Path(raw).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8"), str(path), path.parent
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"cannot read the policy: {reason}", file=str(path)) from exc
        shipped_name = Path(raw).name.removesuffix(".yaml").removesuffix(".yml")
        if "/" in raw or shipped_name not in shipped_policies():
            raise ConfigError(f"policy file {raw!r} not found")
        raw = shipped_name
    item = shipped_file(raw)
    if not _NAME_OK.match(raw) or not item.is_file():
        names = ", ".join(shipped_policies())
        raise ConfigError(f"no policy file or shipped policy named {raw!r} (shipped: {names})")
    return item.read_text(encoding="utf-8"), f"<shipped>/{raw}.yaml", None


# -- loading -------------------------------------------------------------------------------


@dataclass
class _Layer:
    file: str
    name: str | None = None
    description: str | None = None
    mode: Mode | None = None
    extends: list[tuple[str, Origin]] = field(default_factory=list)
    grants: dict[str, Access] = field(default_factory=dict)
    deny: list[Entry] = field(default_factory=list)
    approve: list[Entry] = field(default_factory=list)
    approvers: dict[str, tuple[tuple[str, ...], Origin]] = field(default_factory=dict)
    constraints: dict[str, dict[str, FieldRule]] = field(default_factory=dict)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Loader:
    def __init__(self) -> None:
        self.stack: list[str] = []

    def load(self, text: str, label: str, base_dir: Path | None) -> Policy:
        layers = self._layers(text, label, base_dir)
        return _merge(layers)

    def _layers(self, text: str, label: str, base_dir: Path | None) -> list[_Layer]:
        if label in self.stack:
            chain = " -> ".join([*self.stack, label])
            raise ConfigError(f"extends cycle: {chain}", file=label)
        self.stack.append(label)
        data, lines = load_yaml(text, label)
        layer = _parse_layer(data, lines)
        out: list[_Layer] = []
        for ref, origin in layer.extends:
            try:
                base_text, base_label, base_base = _read_source(ref, base_dir)
            except ConfigError as exc:
                raise ConfigError(
                    f"extends: {exc.reason}", file=origin.file, line=origin.line
                ) from exc
            out += self._layers(base_text, base_label, base_base)
        self.stack.pop()
        out.append(layer)
        return out


def _parse_layer(data: Any, lines: Lines) -> _Layer:
    file = lines.file
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise lines.error((), "a policy file is a mapping (name:, grants:, ...)")
    layer = _Layer(file=file)
    for key in data:
        if key not in TOP_KEYS:
            raise lines.error((key,), _unknown("key", key, TOP_KEYS))
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise lines.error((key,), f"{key} must be a string")
    layer.name = data.get("name")
    layer.description = data.get("description")
    if "mode" in data:
        if data["mode"] not in ("enforce", "dry_run"):
            raise lines.error(
                ("mode",), f"mode must be enforce or dry_run, not {shown(data['mode'])}"
            )
        layer.mode = cast(Mode, data["mode"])
    ext = data.get("extends")
    if ext is not None:
        refs = ext if isinstance(ext, list) else [ext]
        for i, ref in enumerate(refs):
            path = ("extends", i) if isinstance(ext, list) else ("extends",)
            if not isinstance(ref, str):
                raise lines.error(path, "extends takes a policy name or file path")
            layer.extends.append((ref, Origin(file, lines.line(path))))
    layer.grants = _parse_grants(data.get("grants"), lines)
    layer.deny = _parse_entries("deny", data.get("deny"), lines)
    layer.approve = _parse_entries("approve", data.get("approve"), lines)
    layer.approvers = _parse_approvers(data.get("approvers"), lines)
    layer.constraints = _parse_constraints(data.get("constraints"), lines)
    layer.limits = _parse_limits(data.get("limits"), lines)
    return layer


def _unknown(kind: str, value: Any, known: Any) -> str:
    import difflib

    if value is None:
        return f"empty {kind}"
    near = difflib.get_close_matches(str(value), [str(k) for k in known], n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return f"unknown {kind} {value!r}{hint}"


def _parse_grants(raw: Any, lines: Lines) -> dict[str, Access]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise lines.error(("grants",), "grants maps resources to read, write or destructive")
    out: dict[str, Access] = {}
    for res, level in raw.items():
        if res not in KNOWN_RESOURCES:
            raise lines.error(("grants", res), _unknown("resource", res, KNOWN_RESOURCES))
        if level not in ACCESS_RANK:
            raise lines.error(
                ("grants", res),
                f"grants.{res}: level must be read, write or destructive, not {shown(level)}",
            )
        out[res] = cast(Access, level)
    return out


def _parse_entries(key: Literal["deny", "approve"], raw: Any, lines: Lines) -> list[Entry]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise lines.error((key,), f"{key} is a list of endpoint names, resources or levels")
    out = []
    known = set(BY_NAME) | KNOWN_RESOURCES | set(ACCESS_RANK)
    for i, entry in enumerate(raw):
        origin = Origin(lines.file, lines.line((key, i)))
        if isinstance(entry, dict):
            out.append(_parse_mapping_entry(key, entry, lines, (key, i), origin))
            continue
        if not isinstance(entry, str) or entry not in known:
            raise lines.error(
                (key, i), _unknown(f"{key} entry (endpoint, resource or level)", entry, known)
            )
        out.append(Entry(key, entry, origin=origin))
    return out


def _parse_mapping_entry(
    key: Literal["deny", "approve"],
    raw: dict[str, Any],
    lines: Lines,
    path: tuple[str | int, ...],
    origin: Origin,
) -> Entry:
    """``{endpoint: X, when: {...}, approvers: [...]}`` (or ``resource:`` / ``access:``)."""
    allowed = (*ENTRY_KINDS, "when", *(("approvers",) if key == "approve" else ()))
    for k in raw:
        if k not in allowed:
            raise lines.error((*path, k), _unknown(f"{key} entry key", k, allowed))
    kinds = [k for k in ENTRY_KINDS if k in raw]
    if len(kinds) != 1:
        raise lines.error(path, f"a {key} entry names one of endpoint:, resource: or access:")
    kind = kinds[0]
    match = raw[kind]
    known = {"endpoint": set(BY_NAME), "resource": KNOWN_RESOURCES, "access": set(ACCESS_RANK)}[
        kind
    ]
    if not isinstance(match, str) or match not in known:
        raise lines.error((*path, kind), _unknown(kind, match, known))
    when: Condition | None = None
    if "when" in raw:
        fields: set[str] | None = None
        if kind == "endpoint":
            fields = set(endpoint_fields(BY_NAME[match]))
            if "status_id" in fields:
                fields.update(STATUS_FIELDS)
        when = parse_condition(
            raw["when"], lines, (*path, "when"), where=f"{key}.when", known_fields=fields
        )
    approvers: tuple[str, ...] = ()
    if "approvers" in raw:
        approvers = _parse_roles(raw["approvers"], lines, (*path, "approvers"))
    return Entry(key, match, when, approvers, origin)


def _parse_roles(raw: Any, lines: Lines, path: tuple[str | int, ...]) -> tuple[str, ...]:
    roles = [raw] if isinstance(raw, str) else raw
    if not isinstance(roles, list) or not roles:
        raise lines.error(path, "approvers is a non-empty list of roles, like [sales-manager]")
    for i, role in enumerate(roles):
        if not isinstance(role, str) or not ROLE.fullmatch(role):
            raise lines.error(
                (*path, i) if isinstance(raw, list) else path,
                f"{shown(role)} is not a role name (lower-case letters, digits, '.', '_', '-')",
            )
    return tuple(dict.fromkeys(roles))


def _parse_approvers(raw: Any, lines: Lines) -> dict[str, tuple[tuple[str, ...], Origin]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise lines.error(("approvers",), "approvers maps approve entries (or default) to roles")
    return {
        key: (
            _parse_roles(roles, lines, ("approvers", key)),
            Origin(lines.file, lines.line(("approvers", key))),
        )
        for key, roles in raw.items()
    }


@dataclass(frozen=True)
class ArgType:
    """An argument's type: its ``kind`` from ``tools.fields`` (a plain type, checked without
    pydantic), else read from its model (``resolve``) when a value is checked against it, so
    loading a policy imports neither pydantic nor the models. ``model`` None: a path
    parameter, a string."""

    model: str | None
    name: str
    kind: str

    def resolve(self) -> Any:
        if self.model is None:
            return str
        from closeguard.tools import models

        fields = getattr(models, self.model).model_fields
        return next(f.annotation for key, f in fields.items() if (f.alias or key) == self.name)


def endpoint_fields(ep: Endpoint) -> dict[str, list[tuple[Location, ArgType]]]:
    """Every argument name of an endpoint (wire names) with where it goes and its type."""
    out: dict[str, list[tuple[Location, ArgType]]] = {}
    for loc, model in (("body", ep.body), ("params", ep.query)):
        for name, kind in ARGUMENTS[model].items() if model else ():
            out.setdefault(name, []).append((cast(Location, loc), ArgType(model, name, kind)))
    for name in ep.path_params:
        out.setdefault(name, []).append(("path", ArgType(None, name, "str")))
    return out


def _accepts(arg: ArgType, value: Any) -> bool:
    """Whether ``value`` fits the argument's type, as pydantic's strict validation decides;
    pydantic and the models are imported only for a type that is not a plain one."""
    plain = accepts(arg.kind, value)
    if plain is not None:
        return plain
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(arg.resolve()).validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def _parse_constraints(raw: Any, lines: Lines) -> dict[str, dict[str, FieldRule]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise lines.error(("constraints",), "constraints maps endpoint -> field -> rule")
    out: dict[str, dict[str, FieldRule]] = {}
    for ep_name, fields in raw.items():
        path: tuple[str | int, ...] = ("constraints", ep_name)
        if ep_name not in BY_NAME:
            raise lines.error(path, _unknown("endpoint", ep_name, BY_NAME))
        ep = BY_NAME[ep_name]
        if not isinstance(fields, dict):
            raise lines.error(path, f"constraints.{ep_name} maps field -> rule")
        known = endpoint_fields(ep)
        out[ep_name] = {}
        for fname, rule in fields.items():
            fpath = (*path, fname)
            if fname not in known:
                raise lines.error(
                    fpath,
                    _unknown(f"field of {ep_name}", fname, known)
                    + (f" ({ep_name} takes no arguments)" if not known else ""),
                )
            out[ep_name][fname] = _parse_rule(ep_name, fname, rule, known[fname], lines, fpath)
    return out


def _parse_rule(
    ep_name: str,
    fname: str,
    rule: Any,
    where: list[tuple[Location, Any]],
    lines: Lines,
    path: tuple[str | int, ...],
) -> FieldRule:
    label = f"constraints.{ep_name}.{fname}"
    if not isinstance(rule, dict) or not rule:
        raise lines.error(path, f"{label}: a rule is a mapping like {{in: [...]}} or {{max: 5}}")
    for key in rule:
        if key not in RULE_KEYS:
            raise lines.error((*path, key), _unknown("rule", key, RULE_KEYS))
    anns = [ann for _, ann in where]

    def fits(value: Any) -> bool:
        return all(_accepts(ann, value) for ann in anns)

    allowed: tuple[Any, ...] | None = None
    for key in ("in", "in_list"):
        if key in rule:
            values = rule[key]
            if not isinstance(values, list):
                raise lines.error((*path, key), f"{label}.{key} takes a list of values")
            if not values:
                raise lines.error((*path, key), f"{label}.{key} is empty: no value could pass")
            for i, v in enumerate(values):
                if not fits(v):
                    raise lines.error(
                        (*path, key, i),
                        f"{label}.{key}: {shown(v)} is not a valid value for {fname}",
                    )
            allowed = tuple(values) if allowed is None else tuple(v for v in allowed if v in values)
            if not allowed:
                raise lines.error((*path, key), f"{label}: in and in_list share no value")
    bounds: dict[str, float] = {}
    for key in ("min", "max"):
        if key in rule:
            v = rule[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise lines.error((*path, key), f"{label}.{key} must be a number")
            if not fits(v):
                raise lines.error((*path, key), f"{label}.{key}: {fname} is not a number field")
            bounds[key] = float(v)
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise lines.error(
            (*path, "min"),
            f"{label}: min {bounds['min']:g} > max {bounds['max']:g}, no value could pass",
        )
    if allowed is not None and bounds:
        lo, hi = bounds.get("min", float("-inf")), bounds.get("max", float("inf"))
        if not any(isinstance(v, int | float) and lo <= v <= hi for v in allowed):
            raise lines.error(path, f"{label}: no value in the list is within min/max")
    flags: dict[str, bool] = {}
    for key in ("immutable", "required"):
        if key in rule:
            if not isinstance(rule[key], bool):
                raise lines.error((*path, key), f"{label}.{key} must be true or false")
            flags[key] = rule[key]
    scope = rule.get("scope")
    if "scope" in rule:
        if scope not in SCOPES:
            raise lines.error((*path, "scope"), _unknown("scope", scope, SCOPES))
        if not fits("lead_x"):
            raise lines.error((*path, "scope"), f"{label}: scope needs an id (string) field")
    required = flags.get("required", False) or scope is not None
    immutable = flags.get("immutable", False)
    if immutable and (required or allowed is not None or bounds):
        raise lines.error(
            path,
            f"{label}: immutable (may not be sent) contradicts the other rules, no call could pass",
        )
    return FieldRule(
        endpoint=ep_name,
        field=fname,
        locations=tuple(loc for loc, _ in where),
        allowed=allowed,
        min=bounds.get("min"),
        max=bounds.get("max"),
        immutable=immutable,
        scope=scope,
        required=required,
        origin=Origin(lines.file, lines.line(path)),
    )


def _parse_counters(
    raw: Any, lines: Lines, path: tuple[str | int, ...], extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise lines.error(path, f"{'.'.join(map(str, path))} is a mapping of counters")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kpath = (*path, key)
        if key not in COUNTER_KEYS + extra:
            raise lines.error(kpath, _unknown("limit", key, COUNTER_KEYS + extra))
        if key == "window":
            m = _WINDOW.match(str(value))
            if not m or int(m.group(1)) <= 0:
                raise lines.error(
                    kpath, f"window must look like 30s, 15m, 1h or 1d, not {shown(value)}"
                )
            out[key] = int(m.group(1)) * _UNITS[m.group(2)]
        elif key == "per_endpoint":
            if not isinstance(value, dict):
                raise lines.error(kpath, "per_endpoint maps endpoint names to counts")
            per: dict[str, int] = {}
            for name, n in value.items():
                if name not in BY_NAME:
                    raise lines.error((*kpath, name), _unknown("endpoint", name, BY_NAME))
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise lines.error((*kpath, name), f"limit for {name} must be a count >= 0")
                per[name] = n
            out[key] = per
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise lines.error(kpath, f"limit {key} must be a count >= 0")
            out[key] = value
    return out


def _parse_limits(raw: Any, lines: Lines) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise lines.error(("limits",), "limits has per_run and/or per_window")
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key not in ("per_run", "per_window"):
            raise lines.error(
                ("limits", key), _unknown("limits key", key, ("per_run", "per_window"))
            )
        out[key] = _parse_counters(
            value, lines, ("limits", key), ("window",) if key == "per_window" else ()
        )
    return out


def _counters(raw: Mapping[str, Any]) -> Counters:
    return Counters(
        calls=raw.get("calls"),
        writes=raw.get("writes"),
        destructive=raw.get("destructive"),
        per_endpoint=dict(raw.get("per_endpoint", {})),
    )


def _merge(layers: list[_Layer]) -> Policy:
    top = layers[-1]
    name = next((ly.name for ly in reversed(layers) if ly.name), None)
    if name is None:
        name = Path(top.file).name.removesuffix(".yaml").removesuffix(".yml").strip("<>")
    grants: dict[str, Access] = {}
    deny: dict[tuple[str, str], Entry] = {}
    approve: dict[tuple[str, str], Entry] = {}
    approvers: dict[str, tuple[tuple[str, ...], Origin]] = {}
    constraints: dict[str, dict[str, FieldRule]] = {}
    limits: dict[str, dict[str, Any]] = {"per_run": {}, "per_window": {}}
    mode: Mode = "enforce"
    description = ""
    for ly in layers:
        grants.update(ly.grants)
        for entry in ly.deny:
            deny.setdefault((entry.match, entry.describe()), entry)
        for entry in ly.approve:
            approve.setdefault((entry.match, entry.describe()), entry)
        approvers.update(ly.approvers)
        for ep, rules in ly.constraints.items():
            constraints.setdefault(ep, {}).update(rules)
        for key, counters in ly.limits.items():
            for k, v in counters.items():
                if k == "per_endpoint":
                    limits[key].setdefault(k, {}).update(v)
                else:
                    limits[key][k] = v
        mode = ly.mode or mode
        description = ly.description or description
    policy = Policy(
        name=name,
        grants=grants,
        deny_rules=tuple(deny.values()),
        approve_rules=_with_approvers(tuple(approve.values()), approvers),
        approvers={key: roles for key, (roles, _) in approvers.items()},
        constraints={ep: tuple(rules.values()) for ep, rules in constraints.items()},
        limits=Limits(
            per_run=_counters(limits["per_run"]),
            per_window=_counters(limits["per_window"]),
            window_seconds=int(limits["per_window"].get("window", 3600)),
        ),
        mode=mode,
        description=description,
        file=top.file,
        extends=tuple(ly.file for ly in layers[:-1]),
    )
    _cross_check(policy)
    return policy


def _with_approvers(
    entries: tuple[Entry, ...], approvers: Mapping[str, tuple[tuple[str, ...], Origin]]
) -> tuple[Entry, ...]:
    """Each approve entry with its roles: its own, else ``approvers[match]``, else
    ``approvers.default``, else ``DEFAULT_APPROVERS``. A key naming no entry is refused."""
    matches = {e.match for e in entries}
    for key, (_, origin) in approvers.items():
        if key != "default" and key not in matches:
            raise ConfigError(
                _unknown("approvers key (an approve entry or default)", key, [*matches, "default"]),
                file=origin.file,
                line=origin.line,
            )
    default = approvers["default"][0] if "default" in approvers else DEFAULT_APPROVERS
    return tuple(
        e
        if e.approvers
        else dataclasses.replace(
            e, approvers=approvers[e.match][0] if e.match in approvers else default
        )
        for e in entries
    )


def _cross_check(policy: Policy) -> None:
    """Rules that only make sense on the merged policy: constraints on reachable endpoints."""
    table = static_decisions(policy)
    for ep_name, rules in policy.constraints.items():
        ep = BY_NAME[ep_name]
        levels = possible_access(ep)
        if all(table[(ep_name, lvl)].outcome == "deny" for lvl in levels):
            why = table[(ep_name, levels[0])]
            origin = rules[0].origin
            raise ConfigError(
                f"constraints.{ep_name}: the policy never allows {ep_name} ({why.rule}: "
                f"{why.reason}), so this constraint can never apply",
                file=origin.file if origin else policy.file,
                line=origin.line if origin else None,
            )
