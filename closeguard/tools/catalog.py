"""The endpoint catalog: the single source of truth for every Close method closeguard knows.

Each ``Endpoint`` says what a method is (name, HTTP method, path template under
``/api/v1``), what it acts on (``resource``), how dangerous it is (``access``), what it takes
and returns (pydantic models of ``tools.models``, named here and imported when first asked
for), how it pages and which webhook events it fires. The typed client, the LangChain
tools, the guard's classification, the simulator's routes and the docs are all generated
from ``ENDPOINTS``; adding a method is one entry here.

``classify(method, path, body, params)`` maps any concrete request to its endpoint and
access level, looking at arguments where they change the risk (an email with
``status: outbox`` sends mail for real, so it is destructive; a draft is a write).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from closeguard.tools.access import Access
from closeguard.tools.errors import UnknownEndpoint

if TYPE_CHECKING:
    from pydantic import BaseModel

HTTPMethod = Literal["GET", "POST", "PUT", "DELETE"]
Paging = Literal["offset", "cursor", "search"]
Escalation = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[Access, str] | None]

API_PREFIX = "/api/v1"
_API_DIR = API_PREFIX + "/"
ACCESS_RANK: dict[str, int] = {"read": 0, "write": 1, "destructive": 2}
_PARAM = re.compile(r"\{(\w+)\}")


def _model(name: str) -> type[BaseModel]:
    """The model ``name`` of ``tools.models``. The catalog names its models rather than
    holding them, so that classifying calls and listing endpoints import no pydantic
    (about half of ``closeguard catalog``'s start); a test checks every name resolves."""
    from closeguard.tools import models

    found: type[BaseModel] = getattr(models, name)
    return found


@dataclass(frozen=True)
class Endpoint:
    """One Close method."""

    name: str
    method: HTTPMethod
    path: str
    resource: str
    access: Access
    summary: str
    result: str
    """The result's model, by its name in ``tools.models`` (``result_model``)."""
    query: str | None = None
    body: str | None = None
    item: str | None = None
    events: tuple[str, ...] = ()
    paging: Paging | None = None
    max_limit: int | None = None
    max_skip: int | None = None
    escalate: Escalation | None = field(default=None, compare=False, repr=False)
    in_guide: bool = False

    @cached_property
    def result_model(self) -> type[BaseModel]:
        """The pydantic model of the result (imported on first use: see ``_model``)."""
        return _model(self.result)

    @cached_property
    def query_model(self) -> type[BaseModel] | None:
        return None if self.query is None else _model(self.query)

    @cached_property
    def body_model(self) -> type[BaseModel] | None:
        return None if self.body is None else _model(self.body)

    @cached_property
    def item_model(self) -> type[BaseModel] | None:
        return None if self.item is None else _model(self.item)

    @property
    def event(self) -> str | None:
        """The main webhook event this method fires, if any."""
        return self.events[0] if self.events else None

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PARAM.findall(self.path))

    @property
    def rate_group(self) -> str:
        """The rate-limit group: the path's first segment, split into reads and writes."""
        root = self.path.strip("/").split("/")[0]
        return f"{root}:{'read' if self.method == 'GET' or self.paging == 'search' else 'write'}"

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        pieces = _PARAM.split(self.path)
        regex = "".join(
            f"(?P<{piece}>[^/]+)" if i % 2 else re.escape(piece) for i, piece in enumerate(pieces)
        )
        return re.compile(f"^{regex}$")

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` (relative to ``/api/v1``) fits this template."""
        found = self.pattern.match(path)
        return found.groupdict() if found else None

    def format_path(self, **params: str) -> str:
        return self.path.format(**params)

    def classify(
        self, body: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> tuple[Access, str | None]:
        """Access level of one concrete call, and why it was raised above the default."""
        if self.escalate is not None:
            raised = self.escalate(body or {}, params or {})
            if raised is not None and ACCESS_RANK[raised[0]] > ACCESS_RANK[self.access]:
                return raised
        return self.access, None


class Call(NamedTuple):
    """A concrete request resolved against the catalog.

    A NamedTuple, immutable and cheap to build: the guard makes one for every request.
    """

    endpoint: Endpoint
    access: Access
    path_params: Mapping[str, str]
    body: Mapping[str, Any]
    params: Mapping[str, Any]
    reason: str | None = None

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def resource(self) -> str:
        return self.endpoint.resource


# -- escalation rules ----------------------------------------------------------------------

SENDING_EMAIL_STATUSES = frozenset({"outbox", "scheduled"})


def _email_sends(body: Mapping[str, Any], _params: Mapping[str, Any]) -> tuple[Access, str] | None:
    status = body.get("status")
    if isinstance(status, str) and status in SENDING_EMAIL_STATUSES:
        return "destructive", f"email status '{status}' sends the email"
    return None


# -- the catalog ---------------------------------------------------------------------------


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _crud(
    resource: str,
    root: str,
    *,
    label: str,
    model: str,
    create: str | None,
    update: str | None,
    list_params: str = "ListParams",
    events_prefix: str | None = None,
    max_limit: int = 100,
    max_skip: int = 250_000,
    guide: Iterable[str] = (),
    escalate: Escalation | None = None,
    delete_access: Access = "destructive",
    write_access: Access = "write",
) -> list[Endpoint]:
    """list / create / get / update / delete for one resource rooted at ``root``."""
    guide_set = set(guide)
    ev = events_prefix or resource
    out = [
        Endpoint(
            name=f"{resource}.list",
            method="GET",
            path=f"/{root}/",
            resource=resource,
            access="read",
            summary=f"List {label}s, a page at a time.",
            result="Page",
            query=list_params,
            item=model,
            paging="offset",
            max_limit=max_limit,
            max_skip=max_skip,
            in_guide="list" in guide_set,
        ),
        Endpoint(
            name=f"{resource}.get",
            method="GET",
            path=f"/{root}/{{id}}/",
            resource=resource,
            access="read",
            summary=f"Get one {label} by id.",
            result=model,
            query="GetParams",
            in_guide="get" in guide_set,
        ),
    ]
    if create is not None:
        out.append(
            Endpoint(
                name=f"{resource}.create",
                method="POST",
                path=f"/{root}/",
                resource=resource,
                access=write_access,
                summary=f"Create {_a(label)}.",
                result=model,
                body=create,
                events=(f"{ev}.created",) if events_prefix != "" else (),
                escalate=escalate,
                in_guide="create" in guide_set,
            )
        )
    if update is not None:
        out.append(
            Endpoint(
                name=f"{resource}.update",
                method="PUT",
                path=f"/{root}/{{id}}/",
                resource=resource,
                access=write_access,
                summary=f"Update {_a(label)}; only the fields sent change.",
                result=model,
                body=update,
                events=(f"{ev}.updated",) if events_prefix != "" else (),
                escalate=escalate,
                in_guide="update" in guide_set,
            )
        )
    out.append(
        Endpoint(
            name=f"{resource}.delete",
            method="DELETE",
            path=f"/{root}/{{id}}/",
            resource=resource,
            access=delete_access,
            summary=f"Delete {_a(label)}. Irreversible.",
            result="Empty",
            events=(f"{ev}.deleted",) if events_prefix != "" else (),
            in_guide="delete" in guide_set,
        )
    )
    return out


def _build() -> tuple[Endpoint, ...]:
    eps: list[Endpoint] = []
    all5 = ("list", "create", "get", "update", "delete")

    eps += _crud(
        "lead",
        "lead",
        label="lead",
        model="Lead",
        create="LeadCreate",
        update="LeadUpdate",
        list_params="LeadListParams",
        max_limit=200,
        guide=all5,
    )
    eps.append(
        Endpoint(
            name="lead.merge",
            method="POST",
            path="/lead/merge/",
            resource="lead",
            access="destructive",
            summary="Merge the source lead into the destination; the source disappears.",
            result="Lead",
            body="LeadMerge",
            events=("lead.merged",),
            in_guide=True,
        )
    )
    eps += _crud(
        "contact",
        "contact",
        label="contact",
        model="Contact",
        create="ContactCreate",
        update="ContactUpdate",
        list_params="ContactListParams",
        guide=all5,
    )
    eps += _crud(
        "opportunity",
        "opportunity",
        label="opportunity",
        model="Opportunity",
        create="OpportunityCreate",
        update="OpportunityUpdate",
        list_params="OpportunityListParams",
        guide=all5,
    )
    eps.append(
        Endpoint(
            name="activity.list",
            method="GET",
            path="/activity/",
            resource="activity",
            access="read",
            summary="List activities of every type (notes, calls, emails, status changes…).",
            result="Page",
            query="ActivityListParams",
            item="Activity",
            paging="offset",
            max_limit=100,
            max_skip=250_000,
            in_guide=True,
        )
    )
    typed_activities: tuple[tuple[str, str, str, str, str], ...]
    typed_activities = (
        ("note", "note", "NoteActivity", "NoteCreate", "NoteUpdate"),
        ("call", "call", "CallActivity", "CallCreate", "CallUpdate"),
        ("email", "email", "EmailActivity", "EmailCreate", "EmailUpdate"),
    )
    for kind, label, model, create, update in typed_activities:
        group = _crud(
            f"activity.{kind}",
            f"activity/{kind}",
            label=f"{label} activity",
            model=model,
            create=create,
            update=update,
            list_params="ActivityListParams",
            guide=("create",),
            escalate=_email_sends if kind == "email" else None,
        )
        if kind == "email":
            group = [
                _with_events(ep, ("activity.email.created", "activity.email.sent"))
                if ep.name.endswith(".create")
                else _with_events(ep, ("activity.email.updated", "activity.email.sent"))
                if ep.name.endswith(".update")
                else ep
                for ep in group
            ]
        eps += group

    tasks = _crud(
        "task",
        "task",
        label="task",
        model="Task",
        create="TaskCreate",
        update="TaskUpdate",
        list_params="TaskListParams",
        guide=("list", "create", "update", "delete"),
    )
    eps += [
        _with_events(ep, ("task.updated", "task.completed")) if ep.name == "task.update" else ep
        for ep in tasks
    ]
    eps.append(
        Endpoint(
            name="task.bulk_update",
            method="PUT",
            path="/task/",
            resource="task",
            access="destructive",
            summary="Apply the same change to every task matching the filter (query params).",
            result="Page",
            query="TaskBulkFilter",
            body="TaskUpdate",
            events=("task.updated", "task.completed"),
            in_guide=True,
        )
    )

    for obj in ("lead", "contact", "opportunity", "activity"):
        eps += _crud(
            f"custom_field.{obj}",
            f"custom_field/{obj}",
            label=f"{obj} custom field",
            model="CustomField",
            create="CustomFieldCreate",
            update="CustomFieldUpdate",
            events_prefix="",
            write_access="destructive",
            guide=("list", "create") if obj == "lead" else (),
        )

    eps += [
        Endpoint(
            name="status.lead.list",
            method="GET",
            path="/status/lead/",
            resource="status",
            access="read",
            summary="List the organization's lead statuses.",
            result="Page",
            item="LeadStatus",
        ),
        Endpoint(
            name="status.opportunity.list",
            method="GET",
            path="/status/opportunity/",
            resource="status",
            access="read",
            summary="List opportunity statuses (each active, won or lost, in a pipeline).",
            result="Page",
            item="OpportunityStatus",
        ),
        Endpoint(
            name="pipeline.list",
            method="GET",
            path="/pipeline/",
            resource="pipeline",
            access="read",
            summary="List pipelines with their opportunity statuses.",
            result="Page",
            item="Pipeline",
        ),
        Endpoint(
            name="user.me",
            method="GET",
            path="/me/",
            resource="user",
            access="read",
            summary="The user the credential belongs to.",
            result="User",
            query="GetParams",
            in_guide=True,
        ),
        Endpoint(
            name="user.list",
            method="GET",
            path="/user/",
            resource="user",
            access="read",
            summary="List the users of the organization.",
            result="Page",
            query="ListParams",
            item="User",
            paging="offset",
            max_limit=100,
            max_skip=250_000,
            in_guide=True,
        ),
        Endpoint(
            name="user.get",
            method="GET",
            path="/user/{id}/",
            resource="user",
            access="read",
            summary="Get one user by id.",
            result="User",
            query="GetParams",
        ),
        Endpoint(
            name="organization.get",
            method="GET",
            path="/organization/{id}/",
            resource="organization",
            access="read",
            summary="Get the organization.",
            result="Organization",
            query="GetParams",
        ),
        Endpoint(
            name="organization.update",
            method="PUT",
            path="/organization/{id}/",
            resource="organization",
            access="destructive",
            summary="Update the organization's settings (affects every member).",
            result="Organization",
            body="OrganizationUpdate",
            in_guide=True,
        ),
    ]

    hooks = _crud(
        "webhook",
        "webhook",
        label="webhook subscription",
        model="WebhookSubscription",
        create="WebhookCreate",
        update="WebhookUpdate",
        events_prefix="",
        write_access="destructive",
        guide=("list", "create", "delete"),
    )
    eps += hooks
    eps += [
        Endpoint(
            name="event.list",
            method="GET",
            path="/event/",
            resource="event",
            access="read",
            summary="Read the Event Log (30 days), newest first, by cursor.",
            result="EventPage",
            query="EventListParams",
            item="Event",
            paging="cursor",
            max_limit=50,
            in_guide=True,
        ),
        Endpoint(
            name="event.get",
            method="GET",
            path="/event/{id}/",
            resource="event",
            access="read",
            summary="Get one Event Log entry by id.",
            result="Event",
        ),
        Endpoint(
            name="data.search",
            method="POST",
            path="/data/search/",
            resource="lead",
            access="read",
            summary="Advanced Filtering: search leads or contacts with a query object.",
            result="SearchPage",
            body="SearchBody",
            item="Lead",
            paging="search",
            max_limit=200,
        ),
    ]
    return tuple(eps)


def _with_events(ep: Endpoint, events: tuple[str, ...]) -> Endpoint:
    return replace(ep, events=events)


ENDPOINTS: tuple[Endpoint, ...] = _build()
BY_NAME: dict[str, Endpoint] = {ep.name: ep for ep in ENDPOINTS}
RESOURCES: tuple[str, ...] = tuple(dict.fromkeys(ep.resource for ep in ENDPOINTS))


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


class _Group(NamedTuple):
    """The endpoints sharing a method and first path segment, as one regular expression:
    alternative ``e{i}`` is ``endpoints[i]``'s template, literal paths first so
    ``/lead/merge/`` is not read as ``/lead/{id}/`` (alternatives are tried in order)."""

    regex: re.Pattern[str]
    endpoints: tuple[Endpoint, ...]
    params: tuple[tuple[tuple[str, str], ...], ...]
    """Per endpoint: (path parameter, its group's name in ``regex``)."""


def _group(eps: list[Endpoint]) -> _Group:
    alternatives, params = [], []
    for i, ep in enumerate(eps):
        pieces = _PARAM.split(ep.path)
        body = "".join(
            f"(?P<e{i}_{piece}>[^/]+)" if j % 2 else re.escape(piece)
            for j, piece in enumerate(pieces)
        )
        alternatives.append(f"(?P<e{i}>{body})")
        params.append(tuple((piece, f"e{i}_{piece}") for piece in pieces[1::2]))
    return _Group(re.compile(f"^(?:{'|'.join(alternatives)})$"), tuple(eps), tuple(params))


def _index() -> dict[tuple[str, str], _Group]:
    groups: dict[tuple[str, str], list[Endpoint]] = {}
    for ep in sorted(ENDPOINTS, key=lambda e: len(e.path_params)):
        groups.setdefault((ep.method, _first_segment(ep.path)), []).append(ep)
    return {key: _group(eps) for key, eps in groups.items()}


_INDEX = _index()
_FOUND: dict[tuple[str, str], tuple[Endpoint, dict[str, str]]] = {}
"""``find_endpoint``'s answers by its exact arguments, of which it is a pure function."""
_FOUND_MAX = 4096


def endpoint(name: str) -> Endpoint:
    """The endpoint called ``name`` (``lead.merge``); ``KeyError`` names close matches."""
    try:
        return BY_NAME[name]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(name, BY_NAME, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise KeyError(f"no endpoint named {name!r}{hint}") from None


@cache
def resource_ancestors(resource: str) -> tuple[str, ...]:
    """``activity.email`` -> (``activity.email``, ``activity``): a grant on a parent covers it.
    Cached: a policy's static decisions ask it thousands of times of a few dozen resources."""
    parts = resource.split(".")
    return tuple(".".join(parts[:i]) for i in range(len(parts), 0, -1))


def relative_path(path_or_url: str) -> str:
    """Strip scheme, host, query and the ``/api/v1`` prefix; ensure the trailing slash."""
    if (
        path_or_url.startswith(_API_DIR)
        and path_or_url.endswith("/")
        and "?" not in path_or_url
        and "#" not in path_or_url
    ):
        return path_or_url[len(API_PREFIX) :]
    if path_or_url.startswith("/") and "?" not in path_or_url and "#" not in path_or_url:
        path = path_or_url
    else:
        path = urlsplit(path_or_url).path or "/"
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX) :] or "/"
    if not path.startswith("/"):
        path = "/" + path
    if not path.endswith("/"):
        path += "/"
    return path


def allowed_methods(path: str) -> tuple[str, ...]:
    """Methods the catalog knows for a relative path (for 405 ``Allow``)."""
    rel = relative_path(path)
    found = {ep.method for ep in ENDPOINTS if ep.match(rel) is not None}
    return tuple(sorted(found))


def find_endpoint(method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
    """The endpoint and path parameters for a request; ``UnknownEndpoint`` when none fits.

    Answers are remembered by ``(method, path)`` in a bounded table (emptied when full):
    the client and the guard both look up every request, mostly on paths seen before.
    """
    found = _FOUND.get((method, path))
    if found is None:
        found = _lookup(method, path)
        if len(_FOUND) >= _FOUND_MAX:
            _FOUND.clear()
        _FOUND[(method, path)] = found
    return found[0], dict(found[1])


def _lookup(method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
    """One match of the request's group regex: which alternative matched is the endpoint."""
    rel = relative_path(path)
    verb = method.upper()
    group = _INDEX.get((verb, _first_segment(rel)))
    hit = None if group is None else group.regex.match(rel)
    if group is None or hit is None or hit.lastgroup is None:
        raise UnknownEndpoint(verb, rel, allowed_methods(rel))
    i = int(hit.lastgroup[1:])
    return group.endpoints[i], {name: hit[key] for name, key in group.params[i]}


def classify(
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Call:
    """Resolve a concrete request to its endpoint and access level, arguments included."""
    ep, path_params = find_endpoint(method, path)
    body_map: Mapping[str, Any] = body if type(body) is dict or isinstance(body, Mapping) else {}
    query = dict(params) if params else {}
    if ep.escalate is None:
        return _new_call(Call, (ep, ep.access, path_params, body_map, query, None))
    access, reason = ep.classify(body_map, query)
    return _new_call(Call, (ep, access, path_params, body_map, query, reason))


_new_call = tuple.__new__
"""``Call``'s fields positionally, without ``NamedTuple.__new__``'s keyword handling."""


def access_allows(granted: Access, wanted: Access) -> bool:
    """``destructive`` implies ``write`` implies ``read``."""
    return ACCESS_RANK[granted] >= ACCESS_RANK[wanted]
