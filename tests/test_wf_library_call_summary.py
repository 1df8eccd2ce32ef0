"""call-summary: a model's summary note and next-step task, or one log line without a model."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from closeguard.agent.models import AgentInfo, FunctionChatModel
from closeguard.store import Store
from closeguard.workflows.library.call_summary import WORKFLOW
from tests._wf_library import Org, added, collections, event

CALL_NOTE = "Talked to Ada: they want pricing for 40 seats, decision by Friday."


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=6)


class Model:
    """A FunctionChatModel answering ``reply``; ``seen`` keeps what each call was sent."""

    def __init__(self, reply: str) -> None:
        self.seen: list[list[BaseMessage]] = []
        self.reply = reply
        self.llm = FunctionChatModel(fn=self.answer)

    def answer(self, messages: list[BaseMessage], info: AgentInfo) -> str:
        self.seen.append(messages)
        return self.reply


def answer(
    summary: str = "Ada wants pricing for 40 seats.", next_step: str = "Send pricing"
) -> str:
    return json.dumps({"summary": summary, "next_step": next_step})


async def log_call(org: Org, note: str = CALL_NOTE) -> dict[str, Any]:
    lead_id = next(iter(org.sim.state["leads"]))
    events = await org.act(
        lambda c: c.calls.create({"lead_id": lead_id, "note": note, "duration": 300})
    )
    return event(events, "activity.call", "created")


async def test_the_summary_and_the_next_step_land_on_the_lead_and_nothing_else(org: Org) -> None:
    call = await log_call(org)
    assert WORKFLOW.trigger.matches(call)
    model = Model(answer())
    before = org.snapshot()

    result = await org.run(WORKFLOW, event=call, llm=model.llm)

    assert result.status == "completed", result.error
    assert CALL_NOTE in str(model.seen[0][-1].content)
    diff = org.diff(before)
    [note_id], [task_id] = added(diff, "activities"), added(diff, "tasks")
    assert collections(diff) == {note_id: "+activities", task_id: "+tasks"}
    note = org.get("activities", note_id)
    assert note["_type"] == "Note" and note["lead_id"] == call["lead_id"]
    assert note["note"] == f"Call summary ({call['object_id']}): Ada wants pricing for 40 seats."
    task = org.get("tasks", task_id)
    assert task["text"] == f"Next step after call {call['object_id']}: Send pricing"
    assert task["assigned_to"] == call["data"]["user_id"] and task["date"] == "2026-01-16"


async def test_without_a_model_it_logs_one_line_and_writes_nothing(
    org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    call = await log_call(org)
    before = org.snapshot()

    with caplog.at_level(logging.INFO, logger="closeguard.workflows"):
        result = await org.run(WORKFLOW, event=call)

    assert result.status == "completed" and org.diff(before).empty
    lines = [r.getMessage() for r in caplog.records if "call-summary skipped" in r.getMessage()]
    assert len(lines) == 1 and "no model configured (set CLOSEGUARD_MODEL" in lines[0]


async def test_the_same_call_twice_is_summarized_once(org: Org) -> None:
    call = await log_call(org)
    await org.run(WORKFLOW, event=call, llm=Model(answer()).llm)
    before = org.snapshot()
    second = Model(answer("Something else", "Another step"))

    again = await org.run(WORKFLOW, event=call, llm=second.llm)

    assert again.status == "completed" and org.diff(before).empty
    assert second.seen == []  # the model is not even asked again


async def test_an_answer_that_is_not_json_becomes_the_note_with_no_task(org: Org) -> None:
    call = await log_call(org)
    before = org.snapshot()

    await org.run(WORKFLOW, event=call, llm=Model("They liked the demo.").llm)

    diff = org.diff(before)
    assert not added(diff, "tasks")
    [note_id] = added(diff, "activities")
    assert org.get("activities", note_id)["note"].endswith("They liked the demo.")


async def test_calls_without_text_and_other_activities_do_not_fire(org: Org) -> None:
    silent = await log_call(org, note="")
    lead_id = next(iter(org.sim.state["leads"]))
    noted = await org.act(lambda c: c.notes.create({"lead_id": lead_id, "note": CALL_NOTE}))
    assert not WORKFLOW.trigger.matches(silent)
    assert not WORKFLOW.trigger.matches(event(noted, "activity.note", "created"))


async def test_a_transcript_counts_as_call_text(org: Org) -> None:
    silent = await log_call(org, note="")
    with_transcript = {
        **silent,
        "data": {**silent["data"], "recording_transcript": {"utterances": [{"text": "Hi Ada"}]}},
    }
    assert WORKFLOW.trigger.matches(with_transcript)
