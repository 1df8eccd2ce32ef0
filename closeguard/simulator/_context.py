"""What a handler gets (``Ctx``) and how it fails (``ApiError``), plus shared validation.

Handlers validate everything first and mutate state only after, so a refused request
leaves no trace. Events a handler emits are staged on the context and committed by the
app only when the handler returned normally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from closeguard.simulator.events import EventLog
from closeguard.simulator.state import Obj, OrgState, iso, parse_iso
from closeguard.tools.catalog import Endpoint
from closeguard.tools.models import CUSTOM_FIELD_KEY

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ApiError(Exception):
    """A Close error response: status plus ``error`` / ``errors`` / ``field-errors``."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        errors: list[str] | None = None,
        field_errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.errors = errors if errors is not None else ([error] if not field_errors else [])
        self.field_errors = dict(field_errors or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "errors": self.errors, "field-errors": self.field_errors}


def bad_request(field_errors: Mapping[str, str] | None = None, *errors: str) -> ApiError:
    parts = [*errors, *(f"{k}: {v}" for k, v in (field_errors or {}).items())]
    return ApiError(
        400, "; ".join(parts) or "Bad request", errors=list(errors), field_errors=field_errors
    )


def not_found(what: str = "Object") -> ApiError:
    return ApiError(404, f"{what} not found")


@dataclass
class Ctx:
    """One request as a handler sees it."""

    state: OrgState
    log: EventLog
    endpoint: Endpoint
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any
    user_id: str
    api_key_id: str
    request_id: str
    method: str
    path: str
    now: datetime
    pending: list[Obj] = field(default_factory=list)
    # Added to the meta of every event emitted from here on (a merge's lead ids).
    extra_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def now_iso(self) -> str:
        return iso(self.now)

    @property
    def org_id(self) -> str:
        return self.state.organization_id

    def new_id(self, prefix: str) -> str:
        return self.state.ids.new(prefix)

    def stamp_new(self, obj: Obj) -> Obj:
        """Add the fields every created object carries."""
        obj.setdefault("organization_id", self.org_id)
        obj["date_created"] = self.now_iso
        obj["date_updated"] = self.now_iso
        obj["created_by"] = self.user_id
        obj["updated_by"] = self.user_id
        return obj

    def emit(
        self,
        object_type: str,
        action: str,
        obj: Obj,
        *,
        lead_id: str | None = None,
        changed_fields: Iterable[str] = (),
        previous_data: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Stage one Event Log entry in Close's shape."""
        self.pending.append(
            {
                "id": self.new_id("ev"),
                "date_created": self.now_iso,
                "date_updated": self.now_iso,
                "object_type": object_type,
                "object_id": obj["id"],
                "action": action,
                "lead_id": lead_id if lead_id is not None else obj.get("lead_id"),
                "organization_id": self.org_id,
                "user_id": self.user_id,
                "api_key_id": self.api_key_id,
                "request_id": self.request_id,
                "changed_fields": sorted(changed_fields),
                "previous_data": dict(previous_data or {}),
                "data": json.loads(json.dumps(obj)),
                "meta": {
                    "request_method": self.method,
                    "request_path": self.path,
                    **self.extra_meta,
                    **(meta or {}),
                },
            }
        )


# -- validation ---------------------------------------------------------------------------


def pydantic_field_errors(exc: ValidationError) -> tuple[dict[str, str], list[str]]:
    fields: dict[str, str] = {}
    general: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc:
            fields.setdefault(loc, msg)
        else:
            general.append(msg)
    return fields, general


def parse_args(model: type[BaseModel], body: Any) -> dict[str, Any]:
    """Validate a JSON body with a catalog model; the fields sent, by Close's names."""
    if not isinstance(body, dict):
        raise bad_request(None, "The request body must be a JSON object.")
    known = {info.alias or name for name, info in model.model_fields.items()}
    known |= set(model.model_fields)
    unknown = {
        str(k): "Unknown field." for k in body if k not in known and not CUSTOM_FIELD_KEY.match(k)
    }
    try:
        args = model.model_validate(body)
    except ValidationError as exc:
        fields, general = pydantic_field_errors(exc)
        general = [g for g in general if not (unknown and g.startswith("unknown field"))]
        raise bad_request({**unknown, **fields}, *general) from None
    full = args.model_dump(mode="json", by_alias=True)
    sent: dict[str, Any] = {}
    for name in args.model_fields_set:
        info = type(args).model_fields.get(name)
        key = info.alias if info is not None and info.alias else name
        sent[key] = full[key]
    return sent


def parse_query(model: type[BaseModel] | None, query: Mapping[str, str]) -> dict[str, Any]:
    """Validate known query parameters (unknown ones are ignored, as Close does)."""
    if model is None:
        return {}
    known: dict[str, str] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in query:
            known[key] = query[key]
    try:
        parsed = model.model_validate(known)
    except ValidationError as exc:
        fields, general = pydantic_field_errors(exc)
        raise bad_request(fields, *general) from None
    out: dict[str, Any] = {}
    for name, info in type(parsed).model_fields.items():
        if name in parsed.model_fields_set:
            out[info.alias or name] = getattr(parsed, name)
    return out


def check_emails(values: Any, prefix: str, errors: dict[str, str]) -> None:
    for i, item in enumerate(values or []):
        address = item.get("email") if isinstance(item, dict) else item
        if not isinstance(address, str) or not EMAIL_RE.match(address):
            key = f"{prefix}.{i}.email" if isinstance(item, dict) else f"{prefix}.{i}"
            errors[key] = "Enter a valid email address."


def check_date(value: Any, key: str, errors: dict[str, str]) -> None:
    if value is None:
        return
    try:
        parse_iso(str(value))
    except ValueError:
        errors[key] = "Invalid date or datetime."


def fields_filter(obj: Obj, fields: str | None) -> Obj:
    """Apply ``_fields=a,b`` (``_all`` keeps everything)."""
    if not fields or fields == "_all":
        return obj
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    return {k: obj[k] for k in wanted if k in obj}
