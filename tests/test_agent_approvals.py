"""Per-call human approval: interrupts, answers, the approval store, restarts, and each
known failure mode of LangChain's human-in-the-loop shown absent here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.types import Command, Interrupt
from typer.testing import CliRunner

from closeguard.agent import (
    AnswerError,
    open_checkpointer,
    pending_interrupts,
    resume_command,
)
from closeguard.agent.testing import answer_all, call, scripted, turn
from closeguard.guardrails import Accounts, Approvals
from closeguard.simulator import Simulator
from closeguard.store import Store
from tests._agent import MERGE_POLICY, TASKS_POLICY, Rig, rig, tool_messages


def _merge_model() -> Any:
    return scripted(
        turn("Merging.", call("lead_merge", source="SRC", destination="DST")),
        turn("Done."),
        turn("Merging again.", call("lead_merge", source="SRC", destination="DST")),
        turn("Done again."),
    )


def _aim(model: Any, index: int, **args: Any) -> None:
    """Put real ids where a script says SRC, DST or L (in every turn)."""
    for placeholder, value in args.items():
        for t in model.turns:
            for c in t.get("tool_calls") or []:
                for k, v in list(c["args"].items()):
                    if v == placeholder:
                        c["args"][k] = value


async def test_merge_interrupts_then_reject_then_approve_across_restarts(
    store: Store, tmp_path: Path
) -> None:
    sim = Simulator(seed=3, leads=6)
    src, dst = list(sim.state["leads"])[:2]
    path = tmp_path / "checkpoints.db"

    async def session() -> Any:
        model = _merge_model()
        _aim(model, 0, SRC=src, DST=dst)
        return model

    # process 1: the merge is proposed and waits for a person
    async with (
        open_checkpointer(path) as saver,
        rig(store, MERGE_POLICY, await session(), sim=sim, checkpointer=saver) as r,
    ):
        first = await r.ask("merge those two")
        [pending] = first["__interrupt__"]
        payload = pending.value
        assert payload["tool"] == "lead_merge" and payload["endpoint"] == "lead.merge"
        assert payload["access"] == "destructive" and payload["args"]["source"] == src
        assert payload["answers"] == ["approve", "edit", "reject"]
        assert Approvals(store).get(payload["approval_id"]).status == "pending"
        assert src in sim.state["leads"]
    # process 2: rejected with a message for the model; nothing changes
    async with (
        open_checkpointer(path) as saver,
        rig(store, MERGE_POLICY, await session(), sim=sim, checkpointer=saver) as r,
    ):
        command = await resume_command(
            r.agent, r.config, {pending.id: {"action": "reject", "message": "wrong pair"}}
        )
        rejected = await r.resume(command)
        [msg] = tool_messages(rejected)
        assert msg.status == "error" and "rejected by tester: wrong pair" in str(msg.content)
        assert src in sim.state["leads"] and sim.request_count["lead.merge"] == 0
        assert Approvals(store).get(payload["approval_id"]).status == "rejected"
        # the user asks again in the same thread; this time it is approved
        again = await r.ask("merge them after all")
        [pending2] = again["__interrupt__"]
    # process 3: approved; merged exactly once
    async with (
        open_checkpointer(path) as saver,
        rig(store, MERGE_POLICY, await session(), sim=sim, checkpointer=saver) as r,
    ):
        assert [i.id for i in await pending_interrupts(r.agent, r.config)] == [pending2.id]
        merged = await r.resume(Command(resume={pending2.id: "approve"}))
        assert src not in sim.state["leads"] and dst in sim.state["leads"]
        assert sim.request_count["lead.merge"] == 1
        assert Approvals(store).get(pending2.value["approval_id"]).status == "consumed"
        assert merged["messages"][-1].content == "Done again."


async def test_batch_of_three_one_rejected_two_run_exactly_once(store: Store) -> None:
    model = scripted(
        turn("", *[call("task_create", lead_id="L", text=f"task {i}") for i in range(3)]),
        turn("ok"),
    )
    async with rig(store, TASKS_POLICY, model) as r:
        _aim(model, 0, L=r.lead_ids()[0])
        first = await r.ask("three tasks")
        by_text = {i.value["args"]["text"]: i.id for i in first["__interrupt__"]}
        assert len(by_text) == 3 and r.sim.request_count["task.create"] == 0
        done = await r.resume(
            Command(
                resume={
                    by_text["task 0"]: "approve",
                    by_text["task 1"]: "reject",
                    by_text["task 2"]: "approve",
                }
            )
        )
        texts = sorted(
            t["text"] for t in r.sim.state["tasks"].values() if t["text"].startswith("task ")
        )
        assert texts == ["task 0", "task 2"] and r.sim.request_count["task.create"] == 2
        assert [m.status for m in tool_messages(done)] == ["success", "error", "success"]
        # any later path to the tools node runs nothing again (langchain #37093, #40491)
        await r.agent.aupdate_state(r.config, {}, as_node="review")
        await r.resume(None)
        assert r.sim.request_count["task.create"] == 2


async def test_a_rejected_call_never_runs_even_if_the_tools_node_is_reached(store: Store) -> None:
    sim = Simulator(seed=3, leads=6)
    src, dst = list(sim.state["leads"])[:2]
    model = _merge_model()
    _aim(model, 0, SRC=src, DST=dst)
    async with rig(store, MERGE_POLICY, model, sim=sim) as r:
        first = await r.ask("merge")
        await r.resume(Command(resume=answer_all(first["__interrupt__"], "reject")))
        forged = AIMessage(
            content="",
            tool_calls=[
                {
                    "name": "lead_merge",
                    "args": {"source": src, "destination": dst},
                    "id": "forged",
                    "type": "tool_call",
                }
            ],
        )
        await r.agent.aupdate_state(r.config, {"messages": [forged]}, as_node="review")
        after = await r.resume(None)
    assert src in sim.state["leads"] and sim.request_count["lead.merge"] == 0
    forged_result = [m for m in tool_messages(after) if m.tool_call_id == "forged"]
    assert "never approved by the review" in str(forged_result[0].content)


async def test_approved_sibling_runs_once_when_the_graph_resumes(store: Store) -> None:
    model = scripted(
        turn(
            "",
            call("lead_list", limit=1),
            call("task_create", lead_id="L", text="a"),
            call("task_create", lead_id="L", text="b"),
        ),
        turn("ok"),
    )
    async with rig(store, TASKS_POLICY, model) as r:
        _aim(model, 0, L=r.lead_ids()[0])
        first = await r.ask("go")
        ids = {i.value["args"]["text"]: i.id for i in first["__interrupt__"]}
        assert r.sim.request_count["lead.list"] == 0
        partial = await r.resume(Command(resume={ids["a"]: "approve"}))
        [left] = partial["__interrupt__"]
        assert left.id == ids["b"]
        assert r.sim.request_count["task.create"] == 0 and r.sim.request_count["lead.list"] == 0
        await r.resume(Command(resume={ids["b"]: "approve"}))
        assert r.sim.request_count["lead.list"] == 1 and r.sim.request_count["task.create"] == 2
        assert len(Approvals(store).list("consumed")) == 2


async def test_wrong_answers_are_refused_or_asked_again_never_stuck(store: Store) -> None:
    model = scripted(
        turn(
            "",
            call("task_create", lead_id="L", text="a"),
            call("task_create", lead_id="L", text="b"),
        ),
        turn("ok"),
    )
    async with rig(store, TASKS_POLICY, model) as r:
        _aim(model, 0, L=r.lead_ids()[0])
        first = await r.ask("go")
        ids = [i.id for i in first["__interrupt__"]]
        with pytest.raises(AnswerError, match="not pending here: nope; pending:"):
            await resume_command(r.agent, r.config, {"nope": "approve"})
        with pytest.raises(AnswerError, match="answer by interrupt id"):
            await resume_command(r.agent, r.config, {})
        with pytest.raises(RuntimeError, match="multiple pending interrupts"):
            await r.resume(Command(resume="approve"))  # raw LangGraph: refused, nothing lost
        assert {i.id for i in await pending_interrupts(r.agent, r.config)} == set(ids)
        bad = await r.resume(Command(resume={ids[0]: "yes please", ids[1]: {"action": "x"}}))
        errors = sorted(i.value["error"] for i in bad["__interrupt__"])
        assert len(errors) == 2 and all("action must be one of" in e for e in errors)
        fixed = await r.resume(Command(resume=answer_all(bad["__interrupt__"], "approve")))
        assert r.sim.request_count["task.create"] == 2 and "__interrupt__" not in fixed
        with pytest.raises(AnswerError, match="not waiting"):
            await resume_command(r.agent, r.config, {ids[0]: "approve"})


@asynccontextmanager
async def _asked_to_create_task(
    store: Store, policy: str
) -> AsyncIterator[tuple[Rig, str, Interrupt]]:
    """A rig whose agent asked approval to create task "a" on its first lead: the rig,
    that lead's id and the interrupt."""
    model = scripted(turn("", call("task_create", lead_id="L", text="a")), turn("ok"))
    async with rig(store, policy, model) as r:
        lead = r.lead_ids()[0]
        _aim(model, 0, L=lead)
        first = await r.ask("go")
        [asked] = first["__interrupt__"]
        yield r, lead, asked


async def test_edited_arguments_are_validated_and_checked_again(store: Store) -> None:
    policy = TASKS_POLICY + "constraints:\n  task.create:\n    text: {in: [a, edited]}\n"
    async with _asked_to_create_task(store, policy) as (r, lead, asked):
        bad = await r.resume(
            Command(resume={asked.id: {"action": "edit", "args": {"lead_id": lead, "txt": 1}}})
        )
        [again] = bad["__interrupt__"]
        assert "invalid arguments for task_create" in again.value["error"]
        assert "txt" in again.value["error"]
        bad2 = await r.resume(Command(resume={again.id: {"action": "edit", "args": [1]}}))
        [again2] = bad2["__interrupt__"]
        assert "as an object" in again2.value["error"]
        done = await r.resume(
            Command(
                resume={again2.id: {"action": "edit", "args": {"lead_id": lead, "text": "edited"}}}
            )
        )
        texts = [t["text"] for t in r.sim.state["tasks"].values() if t["lead_id"] == lead]
        assert "edited" in texts and "a" not in texts
        assert tool_messages(done)[0].status == "success"
        assert Approvals(store).get(asked.value["approval_id"]).status == "rejected"


async def test_an_edit_the_guard_denies_is_refused(store: Store) -> None:
    policy = TASKS_POLICY + "constraints:\n  task.create:\n    text: {in: [a]}\n"
    async with _asked_to_create_task(store, policy) as (r, lead, asked):
        done = await r.resume(
            Command(
                resume={asked.id: {"action": "edit", "args": {"lead_id": lead, "text": "sneaky"}}}
            )
        )
        assert r.sim.request_count["task.create"] == 0
    [msg] = tool_messages(done)
    assert "denied by policy 'task-approver'" in str(msg.content) and "text" in str(msg.content)


@pytest.mark.parametrize("verb", ["approve", "reject"])
async def test_an_approval_answered_from_the_cli_while_the_graph_waits(
    store: Store, verb: str
) -> None:
    from closeguard.cli import app

    sim = Simulator(seed=3, leads=6)
    src, dst = list(sim.state["leads"])[:2]
    model = _merge_model()
    _aim(model, 0, SRC=src, DST=dst)
    async with rig(store, MERGE_POLICY, model, sim=sim) as r:
        first = await r.ask("merge")
        [pending] = first["__interrupt__"]
        Accounts(store).add("boss", roles=["admin"])
        out = CliRunner().invoke(
            app, ["approvals", verb, pending.value["approval_id"], "--as", "boss"]
        )
        assert out.exit_code == 0, out.output
        done = await r.resume(await resume_command(r.agent, r.config, {pending.id: "check"}))
        # the chat's own answer comes too late: the store's first decision stands
    merged = src not in sim.state["leads"]
    assert merged is (verb == "approve")
    assert sim.request_count["lead.merge"] == (1 if verb == "approve" else 0)
    if verb == "reject":
        assert "rejected by boss" in str(tool_messages(done)[0].content)


async def test_a_pending_check_is_asked_again(store: Store) -> None:
    model = _merge_model()
    async with rig(store, MERGE_POLICY, model) as r:
        _aim(model, 0, SRC=r.lead_ids()[0], DST=r.lead_ids()[1])
        first = await r.ask("merge")
        again = await r.resume(Command(resume=answer_all(first["__interrupt__"], "check")))
        [still] = again["__interrupt__"]
        assert "still pending" in still.value["error"]
        assert still.value["approval_id"] == first["__interrupt__"][0].value["approval_id"]


RESTART_STEP = """
import asyncio, json, sys
from pathlib import Path
from closeguard.agent import (build_agent, open_checkpointer, pending_interrupts,
                              resume_command, thread_config)
from closeguard.agent.testing import call, scripted, turn
from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store

tmp, step = Path(sys.argv[1]), sys.argv[2]
world = tmp / "world.json"
sim = Simulator.load(world) if world.exists() else Simulator(seed=3, leads=6)
src, dst = sorted(sim.state["leads"])[:2]
merge = turn("Merging.", call("lead_merge", source=src, destination=dst))
model = scripted(merge, turn("Not merged."), merge, turn("Merged."))
policy = Guarded(Policy.from_yaml(sys.argv[3]), store=Store(f"sqlite:///{tmp / 'store.db'}"))

async def main() -> None:
    async with open_checkpointer(tmp / "checkpoints.db") as saver, sim.client(
            policy=policy, actor="restart") as client:
        agent = build_agent(model, policy, client, checkpointer=saver)
        config = thread_config("t-restart")
        if step == "ask":
            await agent.ainvoke({"messages": [("user", "merge them")]}, config)
        else:
            [waiting] = await pending_interrupts(agent, config)
            await agent.ainvoke(await resume_command(agent, config, {waiting.id: step}), config)
        state = await agent.aget_state(config)
        print(json.dumps({"pending": [i.value["approval_id"] for i in state.interrupts],
                          "last": state.values["messages"][-1].content,
                          "src": src, "dst": dst}))
    sim.save(world)

asyncio.run(main())
"""


def test_merge_across_real_process_restarts(tmp_path: Path) -> None:
    """Each step is a new Python process: the thread lives in the SQLite checkpoint, the
    approvals in the store, the organization in a saved world."""

    def step(answer: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", RESTART_STEP, str(tmp_path), answer, MERGE_POLICY],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return out

    def leads() -> dict[str, Any]:
        return dict(Simulator.load(tmp_path / "world.json").state["leads"])

    asked = step("ask")
    assert len(asked["pending"]) == 1 and asked["src"] in leads()
    rejected = step("reject")
    assert rejected["pending"] == [] and rejected["last"] == "Not merged."
    assert asked["src"] in leads()
    again = step("ask")
    assert len(again["pending"]) == 1 and again["pending"] != asked["pending"]
    approved = step("approve")
    assert approved["pending"] == [] and approved["last"] == "Merged."
    assert asked["src"] not in leads() and asked["dst"] in leads()
