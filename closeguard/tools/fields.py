"""The arguments of the catalog's body and query models: wire names and simple types.

On the standard library, so that loading a policy or a rule checks its field names, and the
values its constraints name, without importing pydantic and ``tools.models`` (about a fifth
of ``closeguard workflows list``'s start). A field's *kind* is its type when the type is a
plain one: ``str``, ``int``, ``bool``, ``list[str]``, ``=a|b`` (one of these strings), each
with ``?`` when None is allowed too; ``""`` for any other type, which ``policy`` checks with
the model itself. ``tests/test_catalog.py`` rebuilds this table from the models with
``kind_of`` and prints it to paste here when a model changes.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

__all__ = ["ARGUMENTS", "accepts", "kind_of"]

ARGUMENTS: dict[str, dict[str, str]] = {
    "ActivityListParams": {
        "_fields": "str?",
        "_skip": "int?",
        "_limit": "int?",
        "lead_id": "str?",
        "contact_id": "str?",
        "user_id": "str?",
        "_type": "str?",
        "date_created__gt": "str?",
        "date_created__lt": "str?",
    },
    "CallCreate": {
        "contact_id": "str?",
        "direction": "=inbound|outbound?",
        "duration": "int?",
        "phone": "str?",
        "note": "str?",
        "status": "str?",
        "lead_id": "str",
    },
    "CallUpdate": {
        "contact_id": "str?",
        "direction": "=inbound|outbound?",
        "duration": "int?",
        "phone": "str?",
        "note": "str?",
        "status": "str?",
    },
    "ContactCreate": {
        "name": "str?",
        "title": "str?",
        "emails": "",
        "phones": "",
        "urls": "",
        "lead_id": "str",
    },
    "ContactListParams": {"_fields": "str?", "_skip": "int?", "_limit": "int?", "lead_id": "str?"},
    "ContactUpdate": {"name": "str?", "title": "str?", "emails": "", "phones": "", "urls": ""},
    "CustomFieldCreate": {
        "name": "str",
        "type": "=text|number|date|datetime|choices|user|contact|hidden|textarea",
        "choices": "list[str]?",
        "accepts_multiple_values": "bool?",
        "description": "str?",
    },
    "CustomFieldUpdate": {
        "name": "str?",
        "choices": "list[str]?",
        "accepts_multiple_values": "bool?",
        "description": "str?",
    },
    "EmailCreate": {
        "contact_id": "str?",
        "to": "list[str]?",
        "cc": "list[str]?",
        "bcc": "list[str]?",
        "sender": "str?",
        "subject": "str?",
        "body_text": "str?",
        "body_html": "str?",
        "status": "=inbox|draft|scheduled|outbox|sent?",
        "lead_id": "str",
    },
    "EmailUpdate": {
        "contact_id": "str?",
        "to": "list[str]?",
        "cc": "list[str]?",
        "bcc": "list[str]?",
        "sender": "str?",
        "subject": "str?",
        "body_text": "str?",
        "body_html": "str?",
        "status": "=inbox|draft|scheduled|outbox|sent?",
    },
    "EventListParams": {
        "_cursor": "str?",
        "_limit": "int?",
        "date_updated__gt": "str?",
        "date_updated__gte": "str?",
        "date_updated__lt": "str?",
        "date_updated__lte": "str?",
        "object_type": "str?",
        "object_id": "str?",
        "action": "str?",
        "lead_id": "str?",
        "user_id": "str?",
        "request_id": "str?",
    },
    "GetParams": {"_fields": "str?"},
    "LeadCreate": {
        "name": "str?",
        "status_id": "str?",
        "description": "str?",
        "url": "str?",
        "contacts": "",
        "addresses": "",
    },
    "LeadListParams": {"_fields": "str?", "_skip": "int?", "_limit": "int?", "query": "str?"},
    "LeadMerge": {"source": "str", "destination": "str"},
    "LeadUpdate": {
        "name": "str?",
        "status_id": "str?",
        "description": "str?",
        "url": "str?",
        "addresses": "",
    },
    "ListParams": {"_fields": "str?", "_skip": "int?", "_limit": "int?"},
    "NoteCreate": {"note": "str?", "note_html": "str?", "contact_id": "str?", "lead_id": "str"},
    "NoteUpdate": {"note": "str?", "note_html": "str?", "contact_id": "str?"},
    "OpportunityCreate": {
        "contact_id": "str?",
        "user_id": "str?",
        "status_id": "str?",
        "value": "int?",
        "value_period": "=one_time|monthly|annual?",
        "value_currency": "str?",
        "confidence": "int?",
        "note": "str?",
        "date_won": "str?",
        "lead_id": "str",
    },
    "OpportunityListParams": {
        "_fields": "str?",
        "_skip": "int?",
        "_limit": "int?",
        "lead_id": "str?",
        "status_id": "str?",
        "status_type": "=active|won|lost?",
        "pipeline_id": "str?",
        "user_id": "str?",
    },
    "OpportunityUpdate": {
        "contact_id": "str?",
        "user_id": "str?",
        "status_id": "str?",
        "value": "int?",
        "value_period": "=one_time|monthly|annual?",
        "value_currency": "str?",
        "confidence": "int?",
        "note": "str?",
        "date_won": "str?",
    },
    "OrganizationUpdate": {"name": "str?", "currency": "str?"},
    "SearchBody": {"query": "", "_fields": "", "sort": "", "_limit": "int?", "cursor": "str?"},
    "TaskBulkFilter": {
        "id__in": "str?",
        "lead_id": "str?",
        "assigned_to": "str?",
        "is_complete": "bool?",
        "date__lt": "str?",
        "date__gt": "str?",
    },
    "TaskCreate": {
        "assigned_to": "str?",
        "text": "str?",
        "date": "str?",
        "is_complete": "bool?",
        "lead_id": "str",
    },
    "TaskListParams": {
        "_fields": "str?",
        "_skip": "int?",
        "_limit": "int?",
        "lead_id": "str?",
        "assigned_to": "str?",
        "is_complete": "bool?",
        "id__in": "str?",
        "date__lt": "str?",
        "date__gt": "str?",
    },
    "TaskUpdate": {"assigned_to": "str?", "text": "str?", "date": "str?", "is_complete": "bool?"},
    "WebhookCreate": {"url": "str", "events": "", "verify_ssl": "bool?"},
    "WebhookUpdate": {
        "url": "str?",
        "events": "",
        "status": "=active|paused?",
        "verify_ssl": "bool?",
    },
}
"""Model name (as the catalog names it) -> each field's wire name -> its kind."""

_PLAIN = {"str": str, "int": int, "bool": bool}


def kind_of(annotation: Any) -> str:
    """The kind of a field's type (see the module), ``""`` when it is not a plain one."""
    args = get_args(annotation)
    optional = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return ""
        annotation = rest[0]
    suffix = "?" if optional else ""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in (str, int, bool):
        return f"{annotation.__name__}{suffix}"
    if origin is list and args == (str,):
        return f"list[str]{suffix}"
    if origin is Literal and args and all(type(a) is str and "|" not in a for a in args):
        return f"={'|'.join(args)}{suffix}"
    return ""


def accepts(kind: str, value: Any) -> bool | None:
    """Whether ``value`` fits a field of ``kind`` as pydantic's strict validation decides
    (a bool is no int, a tuple no list); None when ``kind`` is not a plain one."""
    if not kind:
        return None
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    if kind.startswith("="):
        return type(value) is str and value in kind[1:].split("|")
    if kind == "list[str]":
        return type(value) is list and all(type(v) is str for v in value)
    return type(value) is _PLAIN[kind]
