"""Notifications: the people who can answer a request are told through Apprise, in sales
words, with a link; failures are retried and never reach the run that asked; a reminder
goes out once, half-way to expiry. Sinks are ``json://`` and ``mailto://`` on 127.0.0.1."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.cli._notify import notifying
from closeguard.guardrails import Accounts, Approvals, Guarded, Policy
from closeguard.notify import Describer, Notifier, money, possessive, split_urls
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.clock import FakeClock
from tests._sinks import json_sink, smtp_sink, text_of

SECRET = "sk-live-very-secret-value"


def _ask(store: Store, approvers: tuple[str, ...] = ("sales-manager",), **kw: object) -> str:
    call = classify("PUT", "/lead/lead_1/", {"description": "big", "api_key": SECRET})
    asked = Approvals(store, **kw).request(  # type: ignore[arg-type]
        call,
        method="PUT",
        path="/lead/lead_1/",
        actor="followup-bot",
        reason="lead.update needs approval",
        approvers=approvers,
    )
    return asked.id


async def test_everyone_and_the_accounts_holding_a_role_are_told(store: Store) -> None:
    accounts = Accounts(store)
    with json_sink() as (url, received):
        accounts.add("maria", roles=["sales-manager"], notify=[f"{url}/maria"])
        accounts.add("ron", roles=["rep"], notify=[f"{url}/ron"])
        off, _ = accounts.add("old", roles=["sales-manager"], notify=[f"{url}/old"])
        accounts.disable(off.name)
        notifier = Notifier(store, urls=[f"{url}/all"], console_url="https://cg.example/")
        async with notifier:
            approval_id = _ask(store)
            assert await notifier.drain(10)
        got = received.wait_for(2)
    assert sorted(path for path, _, _ in got) == ["/all", "/maria"]
    message = got[0][1]
    assert message["title"].startswith("Approval needed: ")
    assert f"https://cg.example/approvals#{approval_id}" in message["message"]
    assert "Asked by followup-bot" in message["message"]
    assert "Who can answer: sales-manager" in message["message"]
    assert SECRET not in message["message"] and SECRET not in message["title"]


async def test_a_reused_request_is_not_told_twice(store: Store) -> None:
    with json_sink() as (url, received):
        async with Notifier(store, urls=[url]) as notifier:
            first, again = _ask(store), _ask(store)
            assert await notifier.drain(10)
        assert first == again
        assert len(received.wait_for(1)) == 1 and len(notifier.sent) == 1


async def test_a_failed_delivery_is_retried_with_backoff(store: Store) -> None:
    with json_sink() as (url, received):
        received.fail_first = 2
        async with Notifier(store, urls=[url], backoff=0.01) as notifier:
            _ask(store)
            assert await notifier.drain(10)
        assert len(received.wait_for(1)) == 1 and notifier.failures == 0


async def test_a_dead_url_is_logged_and_never_fails_the_request(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "closeguard.notify")
    dead = "json://127.0.0.1:9/hook?token=" + SECRET
    async with Notifier(store, urls=[dead, "nonsense://x"], retries=2, backoff=0.01) as notifier:
        approval_id = _ask(store)
        assert await notifier.drain(10)
    assert Approvals(store).get(approval_id) is not None
    assert notifier.failures == 2 and not notifier.sent
    assert "failed after 3 attempts" in caplog.text and "not an Apprise URL" in caplog.text
    assert SECRET not in caplog.text


async def test_mail_reaches_a_local_smtp_server(store: Store) -> None:
    with smtp_sink() as (port, received):
        url = f"mailto://127.0.0.1:{port}?from=guard@example.com&to=maria@example.com&mode=insecure"
        async with Notifier(store, urls=[url]) as notifier:
            _ask(store)
            assert await notifier.drain(10)
        got = received.wait_for(1)
    assert got[0][0] == "maria@example.com"
    assert got[0][1]["Subject"].startswith("Approval needed")
    assert "Who can answer: sales-manager" in text_of(got[0][1])


async def test_no_url_tells_the_terminal(store: Store) -> None:
    lines: list[str] = []
    async with Notifier(store, terminal=lines.append) as notifier:
        _ask(store)
        assert await notifier.drain(10)
    assert len(lines) == 1 and lines[0].startswith("Approval needed")


async def test_a_reminder_goes_out_once_half_way_to_expiry(store: Store) -> None:
    clock = FakeClock(1_000_000.0)
    approval_id = _ask(store, ttl=100.0, clock=clock.now)
    lines: list[str] = []
    first = Notifier(store, terminal=lines.append, clock=clock.now, remind_every=0)
    other = Notifier(store, terminal=lines.append, clock=clock.now, remind_every=0)
    async with first, other:
        clock.advance(49)
        assert await first.remind_due() == []
        clock.advance(2)
        assert await first.remind_due() == [approval_id]
        assert await other.remind_due() == [] and await first.remind_due() == []
        assert await first.drain(10)
    assert len(lines) == 1 and lines[0].startswith("Reminder: still waiting")
    assert "in 49 s" in lines[0]


def test_split_urls_keeps_commas_inside_a_url() -> None:
    text = "json://a/x, mailto://h?to=a@x.com,b@y.com  ntfy://topic"
    assert split_urls(text) == ("json://a/x", "mailto://h?to=a@x.com,b@y.com", "ntfy://topic")
    assert split_urls(None) == () and split_urls("  ") == ()


def test_money_is_in_whole_units() -> None:
    assert money(24_000_000, "USD") == "240,000 USD"
    assert money(12_345, "EUR") == "123.45 EUR"
    assert money(None, "USD") == "-"


async def test_the_message_says_in_sales_words_what_is_asked(store: Store) -> None:
    sim = Simulator(seed=3, leads=4)
    async with sim.client() as raw:
        won = next(s for s in (await raw.get("/status/opportunity/"))["data"] if s["type"] == "won")
        deal = (await raw.get("/opportunity/", params={"_limit": 1}))["data"][0]
        await raw.put(f"/opportunity/{deal['id']}/", json={"note": "Expansion"})
    read_only = Guarded(Policy.load("read-only"), store=store)
    describer = Describer(lambda: sim.client(policy=read_only, actor="console"))
    call = classify("PUT", f"/opportunity/{deal['id']}/", {"status_id": won["id"]})
    approval = Approvals(store).request(call, method="PUT", path=f"/opportunity/{deal['id']}/")
    async with Notifier(store, describer=describer, remind_every=0) as notifier:
        notice = await notifier.notice(approval)
    amount = money(deal["value"], "USD")
    assert notice.title == (
        f"Approval needed: Move {possessive(deal['lead_name'])} 'Expansion' deal to Won, {amount}"
    )


def test_closeguard_run_refuses_a_bad_notify_url_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.setenv("CLOSEGUARD_NOTIFY", f"json://127.0.0.1:9/ok, bogus://{SECRET}")
    result = CliRunner().invoke(app, ["run", "--duration", "0"])
    assert result.exit_code == 2
    assert "CLOSEGUARD_NOTIFY: URL 2 of 2 (bogus://...) is not an Apprise URL" in result.output
    assert SECRET not in result.output
    monkeypatch.delenv("CLOSEGUARD_NOTIFY")
    result = CliRunner().invoke(app, ["run", "--duration", "0", "--console-url", "cg.example"])
    assert result.exit_code == 2 and "--console-url takes an http(s) URL" in result.output


def test_the_demo_tells_the_notify_urls_with_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    with json_sink() as (url, received):
        monkeypatch.setenv("CLOSEGUARD_NOTIFY", f"{url}/team")
        result = CliRunner().invoke(
            app, ["run", "--duration", "9", "--console-url", "https://cg.example"]
        )
        assert result.exit_code == 0, result.output
        got = received.wait_for(1, timeout=1)
    assert got, result.output
    path, message, _ = got[0]
    assert path == "/team" and message["title"].startswith("Approval needed: Merge lead ")
    assert "https://cg.example/approvals#appr_" in message["message"]


async def test_a_short_lived_process_delivers_before_it_exits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``closeguard workflows run`` asks inside ``notifying``: leaving it delivers."""
    sim = Simulator(seed=3, leads=2)
    with json_sink() as (url, received):
        monkeypatch.setenv("CLOSEGUARD_NOTIFY", url)
        async with notifying(
            store, api_key=sim.api_key, base_url=None, transport=sim.transport(), say=print
        ) as notifier:
            _ask(store)
            assert not notifier.sent
        assert len(received.items) == 1 and len(notifier.sent) == 1
