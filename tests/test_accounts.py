"""Accounts: only a hash of a personal token is stored; disable and rotate refuse the old
token at once; names, roles and emails are checked."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from closeguard.console.security import Sessions
from closeguard.guardrails import Account, Accounts
from closeguard.guardrails.accounts import hash_token, verify_token
from closeguard.store import Store
from closeguard.tools.errors import AccountError
from tests._pg import fresh_database


def _stored(store: Store) -> str:
    """Everything the users table holds, as one text."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(store.tables.users)).all()
    return repr([tuple(r) for r in rows])


def test_add_returns_a_token_that_authenticates_and_only_its_hash_is_stored(
    store: Store,
) -> None:
    accounts = Accounts(store)
    account, token = accounts.add(
        "maria", roles=["sales-manager", "rep"], email="Maria@Example.COM", notify=["json://x"]
    )
    assert account == Account(
        "maria", ("sales-manager", "rep"), "maria@example.com", False, ("json://x",)
    )
    assert token.startswith("cg_")
    held = _stored(store)
    secret = token.split("_", 2)[2]
    assert token not in held and secret not in held
    assert "scrypt$" in held
    assert accounts.authenticate(token) == account
    assert Accounts(store).authenticate(token) == account, "another process checks the hash"
    assert accounts.get("maria") == account
    assert accounts.by_email("MARIA@example.com") == account
    assert accounts.list() == [account]


def test_wrong_or_malformed_tokens_do_not_authenticate(store: Store) -> None:
    accounts = Accounts(store)
    _, token = accounts.add("omar", roles=["rep"])
    prefix, token_id, secret = token.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for wrong in (
        f"{prefix}_{token_id}_{flipped}",
        f"{prefix}_{'0' * 16}_{secret}",
        token[:-1],
        "",
        "Bearer " + token,
        "cg_zz",
    ):
        assert accounts.authenticate(wrong) is None, wrong
    assert accounts.authenticate(f"  {token} ") is not None


def test_disable_refuses_the_token_even_after_it_was_verified(store: Store) -> None:
    accounts = Accounts(store)
    _, token = accounts.add("omar", roles=["rep"])
    assert accounts.authenticate(token) is not None
    disabled = accounts.disable("omar")
    assert disabled.disabled
    assert accounts.authenticate(token) is None
    assert accounts.get("omar") == disabled, "a disabled account stays, for the audit"
    assert not disabled.can_answer(["rep"])


def test_rotate_gives_a_new_token_and_the_old_one_stops(store: Store) -> None:
    accounts = Accounts(store)
    _, old = accounts.add("omar", roles=["rep"])
    assert accounts.authenticate(old) is not None
    new = accounts.rotate("omar")
    assert new != old
    assert accounts.authenticate(old) is None
    found = accounts.authenticate(new)
    assert found is not None and found.name == "omar"


def test_bad_names_roles_emails_and_duplicates_are_refused(store: Store) -> None:
    accounts = Accounts(store)
    accounts.add("maria", roles=["admin"], email="m@example.com")
    with pytest.raises(AccountError, match="exists already"):
        accounts.add("maria", roles=["rep"])
    with pytest.raises(AccountError, match="already has the email"):
        accounts.add("other", roles=["rep"], email="M@example.com")
    with pytest.raises(AccountError, match="not an account name"):
        accounts.add("bad name", roles=["rep"])
    with pytest.raises(AccountError, match="not a role name"):
        accounts.add("omar", roles=["Sales Manager"])
    with pytest.raises(AccountError, match="at least one role"):
        accounts.add("omar", roles=[])
    with pytest.raises(AccountError, match="not an email"):
        accounts.add("omar", roles=["rep"], email="nope")
    with pytest.raises(AccountError, match="Apprise URL"):
        accounts.add("omar", roles=["rep"], notify=["slack-channel"])
    with pytest.raises(AccountError, match="no account"):
        accounts.disable("nobody")
    with pytest.raises(AccountError, match="no account"):
        accounts.rotate("nobody")
    assert [a.name for a in accounts.list()] == ["maria"]


def test_the_hash_checks_only_its_own_secret() -> None:
    stored = hash_token("s3cret", n=2**10)
    assert verify_token("s3cret", stored)
    assert not verify_token("s3cret!", stored)
    assert not verify_token("s3cret", "md5$abc")
    assert not verify_token("s3cret", "scrypt$x$8$1$00$00")
    assert hash_token("s3cret", n=2**10) != stored, "a fresh salt each time"


def test_can_answer_needs_one_listed_role() -> None:
    rep = Account("omar", ("rep",), None, False, ())
    assert rep.can_answer(["rep", "admin"])
    assert not rep.can_answer(["admin"])
    assert not rep.can_answer([])


async def test_the_async_check_agrees_with_the_sync_one(store: Store) -> None:
    accounts = Accounts(store)
    account, token = accounts.add("maria", roles=["admin"])
    assert await accounts.aauthenticate(token) == account, "first check: scrypt on a thread"
    assert await accounts.aauthenticate(token) == account, "then the memo"
    assert await accounts.aauthenticate(token[:-1] + "?") is None
    accounts.rotate("maria")
    assert await accounts.aauthenticate(token) is None


def test_accounts_and_console_sessions_on_postgresql() -> None:
    with fresh_database() as url:
        store = Store(url)
        try:
            accounts = Accounts(store)
            account, token = accounts.add("maria", roles=["admin"], email="m@example.com")
            assert Accounts(store).authenticate(token) == account
            assert accounts.by_email("M@example.com") == account
            sessions = Sessions(store)
            opened = sessions.open("maria", account.roles, "token")
            found = sessions.get(opened.id)
            assert found is not None and found.roles == ("admin",) and found.via == "token"
            accounts.rotate("maria")
            assert accounts.authenticate(token) is None
        finally:
            store.dispose()
