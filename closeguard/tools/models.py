"""Pydantic models of Close's objects and of the arguments its methods take.

Resource models (``Lead``, ``Task``...) are tolerant: Close adds fields over time and
custom field values arrive as ``custom.cf_…`` keys, so unknown keys are kept, not refused;
every field but ``id`` is optional, and values Close may add to (statuses, directions,
types) are plain strings. An answer that still does not fit is a ``ResponseFormatError``.
Argument models (``LeadCreate``, ``TaskUpdate``...) are strict: a misspelt field would be
silently ignored by Close, so it is refused here, except ``custom.cf_…`` keys.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from closeguard.tools.access import Access as Access

CUSTOM_FIELD_KEY = re.compile(r"^custom\.cf_[A-Za-z0-9]+$")

EmailStatus = Literal["inbox", "draft", "scheduled", "outbox", "sent"]
StatusType = Literal["active", "won", "lost"]
ValuePeriod = Literal["one_time", "monthly", "annual"]
CustomFieldType = Literal[
    "text", "number", "date", "datetime", "choices", "user", "contact", "hidden", "textarea"
]


class CloseObject(BaseModel):
    """Base of every object Close returns: keeps unknown fields (``custom.cf_…`` and new ones)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    @property
    def custom(self) -> dict[str, Any]:
        """Custom field values keyed by ``cf_…`` id."""
        extra = self.model_extra or {}
        return {k.removeprefix("custom."): v for k, v in extra.items() if k.startswith("custom.")}


class Arguments(BaseModel):
    """Base of create/update arguments: unknown fields are refused (a typo must not pass)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send: only fields that were set, by Close's names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class CustomizableArguments(Arguments):
    """Arguments of objects that carry custom fields: ``custom.cf_…`` keys are allowed too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    @model_validator(mode="after")
    def _only_custom_extras(self) -> CustomizableArguments:
        bad = [k for k in (self.model_extra or {}) if not CUSTOM_FIELD_KEY.match(k)]
        if bad:
            raise ValueError(
                f"unknown field(s) {', '.join(sorted(bad))}; custom fields are set as "
                "'custom.cf_<id>'"
            )
        return self


# -- nested values -------------------------------------------------------------------------


class EmailAddress(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)
    email: str
    type: str = "office"


class Phone(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)
    phone: str
    type: str = "office"


class Url(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)
    url: str
    type: str = "url"


class Address(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)
    label: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    zipcode: str | None = None
    country: str | None = None


# -- resources -----------------------------------------------------------------------------


class Contact(CloseObject):
    id: str
    lead_id: str | None = None
    organization_id: str | None = None
    name: str | None = None
    title: str | None = None
    emails: list[EmailAddress] = Field(default_factory=list)
    phones: list[Phone] = Field(default_factory=list)
    urls: list[Url] = Field(default_factory=list)
    date_created: str | None = None
    date_updated: str | None = None


class Lead(CloseObject):
    id: str
    name: str | None = None
    display_name: str | None = None
    status_id: str | None = None
    status_label: str | None = None
    description: str | None = None
    url: str | None = None
    contacts: list[Contact] = Field(default_factory=list)
    addresses: list[Address] = Field(default_factory=list)
    organization_id: str | None = None
    date_created: str | None = None
    date_updated: str | None = None


class Opportunity(CloseObject):
    id: str
    lead_id: str | None = None
    contact_id: str | None = None
    user_id: str | None = None
    status_id: str | None = None
    status_label: str | None = None
    status_type: str | None = None
    pipeline_id: str | None = None
    value: int | None = None
    value_period: str | None = None
    value_currency: str | None = None
    confidence: int | None = None
    note: str | None = None
    date_won: str | None = None
    date_lost: str | None = None
    organization_id: str | None = None
    date_created: str | None = None
    date_updated: str | None = None


class Activity(CloseObject):
    """Any activity; ``type_`` holds Close's ``_type`` (Note, Call, Email...)."""

    id: str
    type_: str | None = Field(default=None, alias="_type")
    lead_id: str | None = None
    contact_id: str | None = None
    user_id: str | None = None
    organization_id: str | None = None
    date_created: str | None = None
    date_updated: str | None = None


class NoteActivity(Activity):
    note: str | None = None
    note_html: str | None = None


class CallActivity(Activity):
    direction: str | None = None
    duration: int | None = None
    phone: str | None = None
    note: str | None = None
    status: str | None = None


class EmailActivity(Activity):
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    sender: str | None = None
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    status: str | None = None
    direction: str | None = None


class Task(CloseObject):
    id: str
    type_: str | None = Field(default="lead", alias="_type")
    lead_id: str | None = None
    lead_name: str | None = None
    assigned_to: str | None = None
    text: str | None = None
    date: str | None = None
    is_complete: bool = False
    organization_id: str | None = None
    date_created: str | None = None
    date_updated: str | None = None


class CustomField(CloseObject):
    id: str
    name: str | None = None
    type: str | None = None
    choices: list[str] | None = None
    accepts_multiple_values: bool = False
    description: str | None = None
    date_created: str | None = None
    date_updated: str | None = None


class User(CloseObject):
    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    organizations: list[Any] = Field(default_factory=list)
    date_created: str | None = None
    date_updated: str | None = None


class Organization(CloseObject):
    id: str
    name: str | None = None
    currency: str | None = None
    memberships: list[Any] = Field(default_factory=list)
    date_created: str | None = None
    date_updated: str | None = None


class LeadStatus(CloseObject):
    id: str
    label: str


class OpportunityStatus(CloseObject):
    id: str
    label: str
    type: str = "active"
    pipeline_id: str | None = None


class Pipeline(CloseObject):
    id: str
    name: str | None = None
    statuses: list[OpportunityStatus] = Field(default_factory=list)


class WebhookEventFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    object_type: str
    action: str
    extra_filter: dict[str, Any] | None = None


class SubscribedEvent(CloseObject):
    """One event a subscription receives (as Close returns it)."""

    object_type: str | None = None
    action: str | None = None
    extra_filter: dict[str, Any] | None = None


class WebhookSubscription(CloseObject):
    id: str
    url: str | None = None
    events: list[SubscribedEvent] = Field(default_factory=list)
    status: str = "active"
    verify_ssl: bool = True
    signature_key: str | None = None
    date_created: str | None = None
    date_updated: str | None = None


class Event(CloseObject):
    id: str
    object_type: str | None = None
    object_id: str | None = None
    action: str | None = None
    lead_id: str | None = None
    organization_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    request_id: str | None = None
    changed_fields: list[str] = Field(default_factory=list)
    previous_data: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    date_created: str | None = None
    date_updated: str | None = None


# -- pages ---------------------------------------------------------------------------------


class Page(CloseObject):
    """An offset-paged list: ``data`` and ``has_more`` (some lists add ``total_results``)."""

    data: list[dict[str, Any]] = Field(default_factory=list)
    has_more: bool = False
    total_results: int | None = None


class EventPage(CloseObject):
    data: list[dict[str, Any]] = Field(default_factory=list)
    cursor_next: str | None = None
    cursor_previous: str | None = None


class SearchPage(CloseObject):
    data: list[dict[str, Any]] = Field(default_factory=list)
    cursor: str | None = None


class Empty(CloseObject):
    """What a delete returns: ``{}``."""


# -- query arguments -----------------------------------------------------------------------


class GetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    fields: str | None = Field(
        default=None, alias="_fields", description="Comma-separated fields to return."
    )


class ListParams(GetParams):
    skip: int | None = Field(default=None, alias="_skip", ge=0, description="Objects to skip.")
    limit: int | None = Field(default=None, alias="_limit", ge=1, description="Page size.")


class LeadListParams(ListParams):
    query: str | None = Field(
        default=None, description="Close search query, e.g. 'name:Acme' or 'status:\"Won\"'."
    )


class ContactListParams(ListParams):
    lead_id: str | None = None


class OpportunityListParams(ListParams):
    lead_id: str | None = None
    status_id: str | None = None
    status_type: StatusType | None = None
    pipeline_id: str | None = None
    user_id: str | None = None


class ActivityListParams(ListParams):
    lead_id: str | None = None
    contact_id: str | None = None
    user_id: str | None = None
    type_: str | None = Field(default=None, alias="_type", description="Note, Call, Email…")
    date_created__gt: str | None = None
    date_created__lt: str | None = None


class TaskListParams(ListParams):
    lead_id: str | None = None
    assigned_to: str | None = None
    is_complete: bool | None = None
    id__in: str | None = Field(default=None, description="Comma-separated task ids.")
    date__lt: str | None = None
    date__gt: str | None = None


class TaskBulkFilter(BaseModel):
    """Query filters that select the tasks a bulk update touches."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    id__in: str | None = Field(default=None, description="Comma-separated task ids.")
    lead_id: str | None = None
    assigned_to: str | None = None
    is_complete: bool | None = None
    date__lt: str | None = None
    date__gt: str | None = None


class EventListParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    cursor: str | None = Field(default=None, alias="_cursor")
    limit: int | None = Field(default=None, alias="_limit", ge=1, le=50)
    date_updated__gt: str | None = None
    date_updated__gte: str | None = None
    date_updated__lt: str | None = None
    date_updated__lte: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    action: str | None = None
    lead_id: str | None = None
    user_id: str | None = None
    request_id: str | None = None


# -- bodies --------------------------------------------------------------------------------


class ContactFields(CustomizableArguments):
    name: str | None = None
    title: str | None = None
    emails: list[EmailAddress] | None = None
    phones: list[Phone] | None = None
    urls: list[Url] | None = None


class NestedContact(ContactFields):
    """A contact created inside a lead create."""


class LeadCreate(CustomizableArguments):
    name: str | None = None
    status_id: str | None = None
    description: str | None = None
    url: str | None = None
    contacts: list[NestedContact] | None = None
    addresses: list[Address] | None = None


class LeadUpdate(CustomizableArguments):
    name: str | None = None
    status_id: str | None = None
    description: str | None = None
    url: str | None = None
    addresses: list[Address] | None = None


class LeadMerge(Arguments):
    source: str = Field(description="Lead id that disappears into the destination.")
    destination: str = Field(description="Lead id that survives.")


class ContactCreate(ContactFields):
    lead_id: str


class ContactUpdate(ContactFields):
    pass


class OpportunityFields(CustomizableArguments):
    contact_id: str | None = None
    user_id: str | None = None
    status_id: str | None = None
    value: int | None = Field(default=None, description="Value in cents.")
    value_period: ValuePeriod | None = None
    value_currency: str | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    note: str | None = None
    date_won: str | None = None


class OpportunityCreate(OpportunityFields):
    lead_id: str


class OpportunityUpdate(OpportunityFields):
    pass


class NoteFields(CustomizableArguments):
    note: str | None = None
    note_html: str | None = None
    contact_id: str | None = None


class NoteCreate(NoteFields):
    lead_id: str


class NoteUpdate(NoteFields):
    pass


class CallFields(CustomizableArguments):
    contact_id: str | None = None
    direction: Literal["inbound", "outbound"] | None = None
    duration: int | None = Field(default=None, ge=0)
    phone: str | None = None
    note: str | None = None
    status: str | None = None


class CallCreate(CallFields):
    lead_id: str


class CallUpdate(CallFields):
    pass


class EmailFields(CustomizableArguments):
    contact_id: str | None = None
    to: list[str] | None = None
    cc: list[str] | None = None
    bcc: list[str] | None = None
    sender: str | None = None
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    status: EmailStatus | None = Field(
        default=None, description="draft keeps it; outbox SENDS it for real."
    )


class EmailCreate(EmailFields):
    lead_id: str


class EmailUpdate(EmailFields):
    pass


class TaskFields(Arguments):
    assigned_to: str | None = None
    text: str | None = None
    date: str | None = Field(default=None, description="Due date, YYYY-MM-DD or ISO datetime.")
    is_complete: bool | None = None


class TaskCreate(TaskFields):
    lead_id: str


class TaskUpdate(TaskFields):
    pass


class CustomFieldCreate(Arguments):
    name: str
    type: CustomFieldType
    choices: list[str] | None = None
    accepts_multiple_values: bool | None = None
    description: str | None = None


class CustomFieldUpdate(Arguments):
    name: str | None = None
    choices: list[str] | None = None
    accepts_multiple_values: bool | None = None
    description: str | None = None


class OrganizationUpdate(Arguments):
    name: str | None = None
    currency: str | None = None


class WebhookCreate(Arguments):
    url: str
    events: list[WebhookEventFilter]
    verify_ssl: bool | None = None


class WebhookUpdate(Arguments):
    url: str | None = None
    events: list[WebhookEventFilter] | None = None
    status: Literal["active", "paused"] | None = None
    verify_ssl: bool | None = None


class SearchBody(Arguments):
    query: dict[str, Any] = Field(description="Advanced Filtering query object.")
    fields: dict[str, Any] | None = Field(default=None, alias="_fields")
    sort: list[dict[str, Any]] | None = None
    limit: int | None = Field(default=None, alias="_limit", ge=1)
    cursor: str | None = None
