"""``closeguard chat`` through a pseudo-terminal (pexpect) and as a script (``--once``),
with scripted models against the embedded simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from closeguard.guardrails import Accounts, Approvals
from closeguard.store import Store

ROOT = Path(__file__).resolve().parent.parent
CLOSEGUARD = str(Path(sys.executable).parent / "closeguard")
TIMEOUT = 60


@pytest.fixture
def env(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test store, no Close key and no model in the environment of the chat."""
    out = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLOSE_API_KEY", "CLOSEGUARD_MODEL", "CLOSE_OAUTH_ACCESS_TOKEN")
    }
    out.update(CLOSEGUARD_STORE_URL=str(store.url), COLUMNS="200", TERM="dumb", NO_COLOR="1")
    return out


def _spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        CLOSEGUARD,
        ["chat", *args],
        cwd=str(ROOT),
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(50, 200),
    )


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLOSEGUARD, "chat", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_interactive_chat_with_an_approval_answered_at_the_prompt(env: dict[str, str]) -> None:
    child = _spawn(env, "--model", "scripted:examples/rename-lead.yaml", "--thread", "t-pty")
    child.expect("embedded simulator")
    child.expect("you> ")
    child.sendline("Rename my first lead")
    child.expect(r"agent> I'll find the lead first\.")
    child.expect(r"tool lead_list \{\"limit\": 1\} -> allowed")
    child.expect(r"tool lead_update .* -> needs approval \((appr_\w+)\)")
    approval_id = child.match.group(1)
    child.expect(r"why:  lead\.update \(write\) needs approval")
    child.expect(r"\[a\]pprove, \[e\]dit, \[r\]eject")
    child.sendline("a")
    child.expect("tool lead_update .* -> approved")
    child.expect(r"agent> Done: the lead is now called (.*) \(key account\)\.")
    child.expect("you> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    listed = _run(env, "--threads")
    assert "t-pty" in listed.stdout
    store = Store(env["CLOSEGUARD_STORE_URL"])
    assert Approvals(store).get(approval_id).status == "consumed"  # type: ignore[union-attr]


def test_thread_resumes_after_restart_and_honours_a_cli_approval(env: dict[str, str]) -> None:
    child = _spawn(env, "--model", "scripted:examples/rename-lead.yaml", "--thread", "t-wait")
    child.expect("you> ")
    child.sendline("Rename my first lead")
    child.expect(r"approval (appr_\w+):")
    approval_id = child.match.group(1)
    child.expect(r"\[a\]pprove")
    child.sendeof()  # leave while the call waits
    child.expect(pexpect.EOF)
    child.close()
    Accounts(Store(env["CLOSEGUARD_STORE_URL"])).add("boss", roles=["admin"])
    approved = subprocess.run(
        [CLOSEGUARD, "approvals", "approve", approval_id, "--as", "boss"],
        env=env,
        text=True,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert approved.returncode == 0, approved.stderr
    again = _spawn(env, "--model", "scripted:examples/rename-lead.yaml", "--thread", "t-wait")
    again.expect(rf"approval {approval_id}:")
    again.expect(r"\[a\]pprove")
    again.sendline("")  # Enter: take the answer from the approval store
    again.expect(r"agent> Done: the lead is now called .* \(key account\)\.")
    again.expect("you> ")
    again.sendeof()
    again.expect(pexpect.EOF)


def test_once_prints_the_answer_for_scripts(env: dict[str, str]) -> None:
    done = _run(env, "--once", "Which leads do I have?", "--model", "scripted:examples/lookup.yaml")
    assert done.returncode == 0, done.stderr
    assert "Your first three leads are" in done.stdout and "(25 in all)" in done.stdout
    assert "embedded simulator" in done.stderr and "lead_list" in done.stderr


def test_once_with_an_approval_waits_and_says_how_to_go_on(env: dict[str, str]) -> None:
    done = _run(
        env,
        "--once",
        "Rename it",
        "--model",
        "scripted:examples/rename-lead.yaml",
        "--thread",
        "t-once",
    )
    assert done.returncode == 3
    assert "closeguard approvals approve appr_" in done.stderr
    assert "closeguard chat --thread t-once" in done.stderr


def test_without_a_model_it_says_how_to_set_one(env: dict[str, str]) -> None:
    done = _run(env, "--once", "hi")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "set CLOSEGUARD_MODEL or pass --model" in done.stderr
