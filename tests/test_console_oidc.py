"""Single sign-on against a small OpenID Connect provider on 127.0.0.1: the person is
matched to an account by email and decides as themselves (audited ``via: oidc``); a bad ID
token, an unknown or disabled email, or a forged state logs nobody in."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from closeguard.console import ConsoleConfig, OIDCSettings, build_console
from closeguard.guardrails import Accounts, Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.errors import ConfigError
from tests._oidc import CLIENT_ID, CLIENT_SECRET, Provider
from tests._serve import served


@dataclass
class Rig:
    provider: Provider
    console: str
    http: httpx.AsyncClient


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[Rig]:
    accounts = Accounts(store)
    accounts.add("maria", roles=["sales-manager"], email="maria@example.com")
    accounts.add("zoe", roles=["sales-manager"], email="zoe@example.com")
    accounts.disable("zoe")
    provider = Provider()
    async with served(provider.app()) as issuer:
        provider.issuer = issuer
        settings = OIDCSettings(issuer, CLIENT_ID, CLIENT_SECRET)
        app = build_console(ConsoleConfig(store=store, token="t" * 32, oidc=settings))
        async with served(app) as console, httpx.AsyncClient(follow_redirects=True) as http:
            yield Rig(provider, console, http)


def _ask(store: Store) -> str:
    return (
        Approvals(store)
        .request(
            classify("DELETE", "/lead/lead_1/"),
            method="DELETE",
            path="/lead/lead_1/",
            actor="bot",
            approvers=("sales-manager",),
        )
        .id
    )


async def test_a_person_signs_in_by_email_and_decides_as_themselves(rig: Rig, store: Store) -> None:
    approval_id = _ask(store)
    rig.provider.who = {"email": "Maria@Example.com", "email_verified": True}
    login = await rig.http.get(f"{rig.console}/login")
    assert "single sign-on" in login.text
    page = await rig.http.get(f"{rig.console}/login/sso?next=/approvals")
    assert page.status_code == 200 and str(page.url).endswith("/approvals")
    assert rig.provider.redeemed == 1 and rig.provider.auth_used == "basic"
    assert "maria" in page.text and f'action="/approvals/{approval_id}/approve"' in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    digest = re.search(r'name="call_hash" value="([^"]+)"', page.text)
    assert csrf and digest
    done = await rig.http.post(
        f"{rig.console}/approvals/{approval_id}/approve",
        data={"csrf": csrf[1], "call_hash": digest[1], "comment": ""},
    )
    assert done.status_code == 200
    [row] = [r for r in AuditLog(store).rows() if r["method"] == "DECIDE"]
    assert row["actor"] == "maria" and json.loads(row["args"])["via"] == "oidc"


async def test_a_provider_that_takes_only_posted_secrets_gets_them(rig: Rig) -> None:
    rig.provider.auth_methods = ("client_secret_post",)
    page = await rig.http.get(f"{rig.console}/login/sso")
    assert page.status_code == 200 and rig.provider.auth_used == "post"
    assert "cg_session" in rig.http.cookies


@pytest.mark.parametrize(
    ("who", "says"),
    [
        ({"email": "nobody@example.com"}, "has no account here"),
        ({"email": "zoe@example.com"}, "is disabled"),
        ({"email": "maria@example.com", "email_verified": False}, "has not verified"),
        ({"name": "Maria"}, "sent no email"),
    ],
)
async def test_no_account_no_login(rig: Rig, who: dict[str, object], says: str) -> None:
    rig.provider.who = who
    page = await rig.http.get(f"{rig.console}/login/sso")
    assert page.status_code in (400, 403) and says in page.text
    assert "cg_session" not in rig.http.cookies


@pytest.mark.parametrize("flaw", ["key", "aud", "nonce", "expired"])
async def test_a_bad_id_token_logs_nobody_in(rig: Rig, flaw: str) -> None:
    rig.provider.flaw = flaw
    page = await rig.http.get(f"{rig.console}/login/sso")
    assert page.status_code == 400 and "ID token is not valid" in page.text
    assert "cg_session" not in rig.http.cookies


async def test_a_callback_not_started_here_is_refused(rig: Rig) -> None:
    start = await rig.http.get(f"{rig.console}/login/sso", follow_redirects=False)
    authorize = await rig.http.get(start.headers["location"], follow_redirects=False)
    callback = httpx.URL(authorize.headers["location"])
    forged = callback.copy_set_param("state", "forged")
    page = await rig.http.get(str(forged))
    assert page.status_code == 400 and "not started here" in page.text
    async with httpx.AsyncClient() as stranger:  # no state cookie at all
        page = await stranger.get(str(callback))
    assert page.status_code == 400
    assert rig.provider.redeemed == 0, "no code is redeemed without the right state"


def test_settings_come_all_three_or_not_at_all() -> None:
    assert OIDCSettings.from_env({}) is None
    full = {
        "CLOSEGUARD_OIDC_ISSUER": "https://id.example.com/",
        "CLOSEGUARD_OIDC_CLIENT_ID": "cid",
        "CLOSEGUARD_OIDC_CLIENT_SECRET": "shh-secret",
    }
    settings = OIDCSettings.from_env(full)
    assert settings is not None and settings.issuer == "https://id.example.com"
    assert "shh-secret" not in repr(settings)
    with pytest.raises(ConfigError, match="missing CLOSEGUARD_OIDC_CLIENT_SECRET"):
        OIDCSettings.from_env({**full, "CLOSEGUARD_OIDC_CLIENT_SECRET": ""})
