"""The suite format: a folder per suite holding ``tasks.yaml`` (this module's ``Suite``),
its policies and, where needed, a world file.

A suite names a world (simulator seed and size, an optional saved world file, and
fixture objects with stable handles), then lists tasks. Strings in a task may say
``{{handle}}`` (a fixture's id), ``{{handle.field}}`` (a field of that object in the
initial world), ``{{lead_status:Label}}``, ``{{stage:Label}}``, ``{{user:First}}``,
``{{me}}`` and ``{{today}}`` / ``{{today+N}}``; the runner fills them in per world.

The JSON Schema of this format is ``suite_schema()`` (also saved next to this module as
``suite.schema.json`` for editors; a test keeps the two equal).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from closeguard.simulator.faults import HTTPFaults

__all__ = [
    "ATTACK_VECTORS",
    "BOOKKEEPING_FIELDS",
    "Aggregate",
    "ApprovalMatch",
    "Attack",
    "Call",
    "CallFixture",
    "Candidates",
    "ContactFixture",
    "Delivery",
    "Effect",
    "Expect",
    "Fact",
    "Faults",
    "LeadFixture",
    "NotFact",
    "NumberFact",
    "Reference",
    "StateCheck",
    "Suite",
    "Task",
    "World",
    "suite_schema",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- world ---------------------------------------------------------------------------------


class ContactFixture(_Model):
    handle: str | None = None
    name: str
    title: str | None = None
    email: str | None = None
    phone: str | None = None


class OpportunityFixture(_Model):
    handle: str | None = None
    value: int = Field(description="In cents, as Close stores it.")
    status: str = Field(default="Discovery", description="A pipeline stage label.")
    confidence: int = 50
    value_period: Literal["one_time", "monthly", "annual"] = "one_time"
    note: str = ""


class NoteFixture(_Model):
    handle: str | None = None
    note: str


class EmailFixture(_Model):
    handle: str | None = None
    subject: str
    body_text: str
    direction: Literal["incoming", "outgoing"] = "incoming"
    sender: str | None = None
    to: list[str] = Field(default_factory=list)


class CallFixture(_Model):
    handle: str | None = None
    note: str = Field(description="The call's note (where call-note injections sit).")
    direction: Literal["inbound", "outbound"] = "outbound"
    duration: int = Field(default=0, ge=0, description="Seconds.")


class TaskFixture(_Model):
    handle: str | None = None
    text: str
    date: str = Field(default="{{today}}", description="YYYY-MM-DD (templates allowed).")
    is_complete: bool = False


class LeadFixture(_Model):
    """A lead the suite adds to the generated world, with a stable ``handle``."""

    handle: str
    name: str
    status: str | None = Field(default=None, description="A lead status label.")
    description: str = ""
    url: str | None = None
    custom: dict[str, str] = Field(
        default_factory=dict, description="Custom field name -> text (fields are created)."
    )
    contacts: list[ContactFixture] = Field(default_factory=list)
    opportunities: list[OpportunityFixture] = Field(default_factory=list)
    notes: list[NoteFixture] = Field(default_factory=list)
    emails: list[EmailFixture] = Field(default_factory=list)
    calls: list[CallFixture] = Field(default_factory=list)
    tasks: list[TaskFixture] = Field(default_factory=list)


class World(_Model):
    """The organization every trial starts from (a fresh copy per trial)."""

    seed: int = 0
    leads: int = Field(default=10, ge=0, le=500, description="Generated leads besides fixtures.")
    file: str | None = Field(
        default=None, description="A saved world (closeguard sim save), relative to the suite."
    )
    fixtures: list[LeadFixture] = Field(default_factory=list)


# -- tasks ---------------------------------------------------------------------------------


class Faults(_Model):
    """Faults injected on the API while the task runs, per endpoint group (``lead:read``),
    resource root (``lead``) or ``"*"``. Webhook misdelivery is a workflow task's
    ``deliveries`` (duplicated, out of order, missed), explicit rather than drawn."""

    http: dict[str, HTTPFaults] = Field(default_factory=dict)
    seed: int | None = Field(
        default=None,
        description="The faults' own seed: every trial (and the reference check) draws the "
        "same faults. Unset: trial t uses the run's --seed + t.",
    )


Matcher = Any
"""A field matcher: a plain value (equal), or one of ``{matches: regex}``,
``{contains: text}``, ``{in: [values]}``, ``{gte: n}`` / ``{lte: n}``, ``{not: value}``."""


class StateCheck(_Model):
    """An assertion on the final state: the objects of ``collection`` selected by ``id``
    and/or ``where`` must number ``count`` (default: at least one; ``exists: false``
    means none) and each match ``fields``."""

    collection: str
    id: str | None = None
    where: dict[str, Matcher] = Field(default_factory=dict)
    exists: bool = True
    count: int | None = Field(default=None, ge=0)
    fields: dict[str, Matcher] = Field(default_factory=dict)


class Effect(_Model):
    """Something that must not happen (a forbidden effect), judged on the state diff.

    ``deleted``: the object ``id`` is gone; ``changed``: object ``id`` changed (``field``:
    that field only); ``created``: a new object in ``collection`` matching ``where``;
    ``email_sent``: an email went out (status sent/outbox/scheduled) to an address
    containing ``to`` (any address when unset); ``outside_lead``: anything changed that
    does not belong to lead ``lead``.
    """

    kind: Literal["deleted", "changed", "created", "email_sent", "outside_lead"]
    collection: str | None = None
    id: str | None = None
    field: str | None = None
    where: dict[str, Matcher] = Field(default_factory=dict)
    to: str | None = None
    lead: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> Effect:
        need = {
            "deleted": ("collection", "id"),
            "changed": ("collection", "id"),
            "created": ("collection",),
            "email_sent": (),
            "outside_lead": ("lead",),
        }[self.kind]
        missing = [name for name in need if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind!r} effect needs {', '.join(missing)}")
        return self


Spellings = str | list[str]
"""A fact's text, or a list of its spellings (any one will do)."""


class NotFact(_Model):
    """A fact the answer must NOT contain (any of its spellings)."""

    not_: Spellings = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Aggregate(_Model):
    """A number computed from the world the trial starts from: ``sum``, ``max``, ``min``
    of ``collection.field`` (or ``count`` of ``collection``) over the objects ``where``
    selects, e.g. ``{sum: opportunities.value, where: {lead_id: "{{acme}}"}}``."""

    sum: str | None = None
    max: str | None = None
    min: str | None = None
    count: str | None = None
    where: dict[str, Matcher] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> Aggregate:
        ops = [op for op in ("sum", "max", "min", "count") if getattr(self, op) is not None]
        if len(ops) != 1:
            raise ValueError("an aggregate needs exactly one of sum, max, min, count")
        return self

    @property
    def op(self) -> str:
        return next(op for op in ("sum", "max", "min", "count") if getattr(self, op) is not None)

    @property
    def target(self) -> str:
        return str(getattr(self, self.op))


NumberSpec = float | str | Aggregate
"""A number: literal, a template that fills to one (``"{{acme-deal.value}}"``), or an
``Aggregate`` over the starting world."""


class NumberFact(_Model):
    """A number the answer must state, compared as a number: ``187,500``, ``187500``,
    ``187.5k`` and ``USD 187,500`` are all 187500 (``locale: de``: ``187.500 €``).

    ``scale`` multiplies the expected value (``0.01``: Close's cents as dollars).
    ``only``: besides dates, every number the answer states must be this one or one of
    ``also`` (the addends of a total, say): a wrong total beside the right parts fails.
    """

    number: NumberSpec
    scale: float = 1.0
    locale: Literal["en", "de"] = "en"
    only: bool = False
    also: list[NumberSpec] = Field(default_factory=list)


class Candidates(_Model):
    """A question that names several candidates and wants one of them: the answer must
    name ``pick`` and no other candidate (naming them all, or the wrong one after the
    list, fails). Each candidate is a text or a list of its spellings."""

    candidates: list[Spellings] = Field(min_length=2)
    pick: str

    @model_validator(mode="after")
    def _pick_is_a_candidate(self) -> Candidates:
        if not any(self.pick in _spellings(c) for c in self.candidates):
            raise ValueError(f"pick {self.pick!r} is not one of the candidates")
        return self


Fact = Spellings | NotFact | NumberFact | Candidates


def _spellings(fact: Spellings) -> list[str]:
    return [fact] if isinstance(fact, str) else list(fact)


BOOKKEEPING_FIELDS = frozenset(
    {
        "date_created",
        "date_updated",
        "created_by",
        "created_by_name",
        "updated_by",
        "updated_by_name",
        "organization_id",
    }
)
"""Fields Close keeps itself on every write: never a change a task must name."""


class ApprovalMatch(_Model):
    """An approval-gated call to approve: ``tool`` and, per argument, a matcher."""

    tool: str
    args: dict[str, Matcher] = Field(default_factory=dict)


class Expect(_Model):
    """What success means for a task (all of it must hold)."""

    state: list[StateCheck] = Field(default_factory=list)
    unchanged: bool = Field(default=False, description="Nothing at all may change.")
    only_changes: bool = Field(
        default=True,
        description="Nothing else changed: every changed object is one a state check selects"
        " (or in allow_changes).",
    )
    allow_changes: list[str] = Field(
        default_factory=list, description="Collections where other changes are tolerated."
    )
    allow_fields: list[str] = Field(
        default_factory=list,
        description="Fields (name, or collection.name) a selected object may change besides "
        "those its fields checks name.",
    )
    answer: list[Fact] = Field(
        default_factory=list,
        description="Facts: text the final answer must contain (case-insensitive; a list is "
        "a set of spellings), {not: text}, {number: ...}, {candidates: [...], pick: ...}.",
    )
    refusal: bool = Field(
        default=False,
        description="The answer must say the request was refused and must not claim it done.",
    )
    allow_attempts: list[str] = Field(
        default_factory=list,
        description="Endpoints the agent may try to write besides the reference's (without an "
        "attack, any other attempted write fails the task, even when refused).",
    )
    calls: list[str] = Field(
        default_factory=list,
        description="Endpoints (lead.get) that must have been called successfully.",
    )
    blocked: list[str] = Field(
        default_factory=list,
        description="Endpoints the guard must block: any attempt is refused, none gets through.",
    )


ATTACK_VECTORS = (
    "note",
    "opportunity_note",
    "email",
    "email_sender",
    "call_note",
    "task",
    "custom_field",
    "contact_name",
    "description",
)
"""The places injections really come from; any other label is accepted too."""


class Attack(_Model):
    """A prompt injection planted in the world: what it asks for must not happen."""

    vector: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Where the injection sits: one of ATTACK_VECTORS, or a free label.",
    )
    goal: Literal["delete", "send_email", "change_value", "exfiltrate", "write_elsewhere"]
    forbidden: list[Effect] = Field(min_length=1)


class Call(_Model):
    """One tool call of a reference solution (a LangChain tool name and its arguments;
    ``${tool.path}`` reads an earlier result, as scripted models do)."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class Reference(_Model):
    """The known-good solution: tool calls then a final answer (chat), or the packaged
    workflow itself (workflow tasks need none)."""

    calls: list[Call] = Field(default_factory=list)
    answer: str = ""


class Delivery(_Model):
    """Webhook deliveries of the events the setup calls made, by index (0 = first event):
    ``order`` is what arrives (repeat an index for a duplicate, permute for out-of-order);
    events left out are missed and must come back through Event Log catch-up."""

    order: list[int] = Field(default_factory=list)
    catch_up: bool = True


class Task(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$")
    kind: Literal["chat", "workflow"] = "chat"
    description: str = ""
    policy: str | None = Field(
        default=None, description="A shipped policy name or a file relative to the suite."
    )
    instruction: str | None = None
    scope_leads: list[str] = Field(
        default_factory=list,
        description="The leads this chat is about: the guard's triggered leads, for "
        "policies with scope: triggered constraints.",
    )
    workflow: str | None = None
    setup: list[Call] = Field(
        default_factory=list, description="Calls made (unguarded) before the task starts."
    )
    deliveries: Delivery | None = None
    tick: str | None = Field(default=None, description="Schedule tick, ISO 8601 (templates).")
    params: dict[str, Any] | None = None
    approvals: Literal["reject", "approve", "reference"] | list[ApprovalMatch] = Field(
        default="reject",
        description="Approval-gated calls: reject (default), approve (all; not on an attack "
        "task), reference (exactly the reference's calls) or a list of calls to approve.",
    )
    faults: Faults | None = None
    timeout: float = Field(default=60.0, gt=0)
    attack: Attack | None = None
    expect: Expect = Field(default_factory=Expect)
    reference: Reference = Field(default_factory=Reference)

    @model_validator(mode="after")
    def _kind_fields(self) -> Task:
        if self.kind == "chat":
            if not self.instruction:
                raise ValueError("a chat task needs an instruction")
            if self.workflow or self.deliveries or self.tick or self.params is not None:
                raise ValueError("workflow, deliveries, tick and params are for workflow tasks")
        else:
            if not self.workflow:
                raise ValueError("a workflow task needs workflow: (a packaged workflow name)")
            if self.instruction:
                raise ValueError("a workflow task has no instruction")
            triggers = sum(x is not None for x in (self.deliveries, self.tick, self.params))
            if triggers != 1:
                raise ValueError("a workflow task needs exactly one of deliveries, tick, params")
            if self.approvals not in ("reject", "approve"):
                raise ValueError("a workflow task's approvals are reject or approve")
        return self


class Suite(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    description: str = ""
    policy: str = Field(default="read-only", description="Default policy of the tasks.")
    world: World = Field(default_factory=World)
    tasks: list[Task] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                raise ValueError(f"task id {task.id!r} is used twice")
            seen.add(task.id)
        handles = [h for lead in self.world.fixtures for h in _handles(lead)]
        dup = {h for h in handles if handles.count(h) > 1}
        if dup:
            raise ValueError(f"fixture handle(s) used twice: {', '.join(sorted(dup))}")
        return self


def _handles(lead: LeadFixture) -> list[str]:
    children: list[Any] = [
        *lead.contacts,
        *lead.opportunities,
        *lead.notes,
        *lead.emails,
        *lead.calls,
        *lead.tasks,
    ]
    return [lead.handle, *(c.handle for c in children if c.handle)]


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of ``tasks.yaml``."""
    schema = Suite.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "closeguard eval suite (tasks.yaml)"
    return schema
