"""Resource models keep what Close adds; argument models refuse typos."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from closeguard.tools import models as m


def test_resource_models_keep_unknown_and_custom_fields() -> None:
    lead = m.Lead.model_validate(
        {"id": "lead_1", "name": "Acme", "custom.cf_abc": "gold", "new_field": 3}
    )
    assert lead.custom == {"cf_abc": "gold"}
    assert lead.model_extra == {"custom.cf_abc": "gold", "new_field": 3}


def test_arguments_refuse_typos_but_allow_custom_fields() -> None:
    with pytest.raises(ValidationError, match="stauts_id"):
        m.LeadUpdate.model_validate({"stauts_id": "stat_1"})
    body = m.LeadUpdate.model_validate({"name": "A", "custom.cf_x1": 5}).to_body()
    assert body == {"name": "A", "custom.cf_x1": 5}
    with pytest.raises(ValidationError):
        m.TaskCreate.model_validate({"lead_id": "lead_1", "custom.cf_x": 1})
    with pytest.raises(ValidationError):
        m.WebhookCreate.model_validate({"url": "http://x", "events": [], "secret": "y"})


def test_required_fields_and_ranges() -> None:
    with pytest.raises(ValidationError, match="lead_id"):
        m.ContactCreate.model_validate({"name": "No lead"})
    with pytest.raises(ValidationError):
        m.OpportunityUpdate.model_validate({"confidence": 120})
    with pytest.raises(ValidationError):
        m.EmailCreate.model_validate({"lead_id": "lead_1", "status": "shouted"})


def test_to_body_uses_close_names_and_only_set_fields() -> None:
    body = m.SearchBody.model_validate({"query": {"type": "and"}, "_limit": 5}).to_body()
    assert body == {"query": {"type": "and"}, "_limit": 5}
    assert m.TaskUpdate(is_complete=True).to_body() == {"is_complete": True}
