"""People who answer approvals: accounts with roles, personal tokens, an email for single
sign-on and their own notification addresses.

A personal token is ``cg_<id>_<secret>``: the id finds the account's row, the secret is
checked against a salted scrypt hash (hashlib's), the only form in which the store keeps it.
A token that passed is remembered in memory by its SHA-256 together with the hash it passed
against, so the next request with it costs a row read and no scrypt; rotating or disabling
the account is seen at once, because the row is read every time.

Whoever can write the store can add an account or change a hash, and so act as anyone: the
store is the trust boundary, as for the audit log (see ``docs/architecture.md``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from closeguard.guardrails.roles import ROLE
from closeguard.tools.errors import AccountError

if TYPE_CHECKING:
    from closeguard.store import Store

__all__ = ["Account", "Accounts", "UserStorage", "check_role", "hash_token", "verify_token"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
TOKEN = re.compile(r"cg_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt's cost: about 16 MB and a few tens of ms per check, paid once per token and
process (see the module docstring)."""
_VERIFIED_MAX = 4096


@dataclass(frozen=True)
class Account:
    """A person: their name (what decisions are recorded under), roles, email (matched by
    single sign-on), whether the account is disabled, and their notification URLs."""

    name: str
    roles: tuple[str, ...]
    email: str | None
    disabled: bool
    notify: tuple[str, ...]

    def can_answer(self, approvers: Iterable[str]) -> bool:
        """Whether this person (enabled) holds one of the roles an approval names."""
        return not self.disabled and not set(self.roles).isdisjoint(approvers)


def check_role(role: str) -> str:
    """``role`` if it is a role name (lower-case letters, digits, ``.``, ``_``, ``-``)."""
    if not ROLE.fullmatch(role):
        raise AccountError(
            f"{role!r} is not a role name: lower-case letters, digits, '.', '_' and '-'"
        )
    return role


def hash_token(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``secret`` with a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_token(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        again = hashlib.scrypt(
            secret.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
        )
    except ValueError:
        return False
    return hmac.compare_digest(again.hex(), digest)


def _account(row: Mapping[str, Any]) -> Account:
    return Account(
        name=row["name"],
        roles=tuple(json.loads(row["roles"])),
        email=row["email"],
        disabled=bool(row["disabled"]),
        notify=tuple(json.loads(row["notify"])),
    )


def _roles(roles: Iterable[str]) -> tuple[str, ...]:
    if isinstance(roles, str):
        roles = (roles,)
    out = tuple(dict.fromkeys(check_role(r.strip()) for r in roles))
    if not out:
        raise AccountError("an account needs at least one role (--role ROLE)")
    return out


def _email(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip().lower()
    if not EMAIL.fullmatch(email):
        raise AccountError(f"{email!r} is not an email address")
    return email


def _notify(urls: Iterable[str]) -> tuple[str, ...]:
    out = tuple(u.strip() for u in urls)
    for url in out:
        if "://" not in url:
            raise AccountError("a notification address is an Apprise URL (scheme://...)")
    return out


class UserStorage(Protocol):
    """Where accounts are kept: ``UserRows`` on a ``Store``, or the standard-library
    ``Writer`` of a plain SQLite file (``closeguard.store.writer``, the command line's)."""

    def insert(self, values: Mapping[str, Any]) -> bool: ...

    def get(self, name: str) -> dict[str, Any] | None: ...

    def by_token_id(self, token_id: str) -> dict[str, Any] | None: ...

    def by_email(self, email: str) -> list[dict[str, Any]]: ...

    def all(self) -> list[dict[str, Any]]: ...

    def set(self, name: str, **values: Any) -> bool: ...


class Accounts:
    """Add, find, authenticate, disable and rotate the accounts kept in ``store`` (or in
    ``rows``: the command line's standard-library writer)."""

    def __init__(
        self,
        store: Store | None,
        *,
        clock: Callable[[], float] = time.time,
        rows: UserStorage | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        if rows is None:
            if store is None:
                raise TypeError("Accounts needs a store or rows")
            from closeguard.store.users import UserRows

            rows = UserRows(store)
        self._rows: UserStorage = rows
        self._verified: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def _new_token(self) -> tuple[str, str, str]:
        """A fresh token, its id and its stored hash."""
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        return f"cg_{token_id}_{secret}", token_id, hash_token(secret)

    def add(
        self,
        name: str,
        *,
        roles: Iterable[str],
        email: str | None = None,
        notify: Iterable[str] = (),
    ) -> tuple[Account, str]:
        """A new account and its personal token, which is shown this once and never kept."""
        if not NAME.fullmatch(name):
            raise AccountError(
                f"{name!r} is not an account name: up to 100 letters, digits, '.', '_', '@' "
                "and '-', starting with a letter or digit"
            )
        roles, email, urls = _roles(roles), _email(email), _notify(notify)
        if email is not None and self.by_email(email) is not None:
            raise AccountError(f"another account already has the email {email}")
        token, token_id, hashed = self._new_token()
        now = self.clock()
        row = {
            "name": name,
            "roles": json.dumps(list(roles)),
            "email": email,
            "disabled": False,
            "notify": json.dumps(list(urls)),
            "token_id": token_id,
            "token_hash": hashed,
            "created": now,
            "updated": now,
        }
        if not self._rows.insert(row):
            raise AccountError(f"an account named {name!r} exists already")
        return _account(row), token

    def get(self, name: str) -> Account | None:
        row = self._rows.get(name)
        return _account(row) if row else None

    def by_email(self, email: str) -> Account | None:
        """The account with this email (case-insensitive), disabled ones included."""
        rows = self._rows.by_email(email.strip().lower())
        return _account(rows[0]) if rows else None

    def list(self) -> list[Account]:
        """Every account, by name."""
        return [_account(r) for r in self._rows.all()]

    def _existing(self, name: str) -> None:
        if self._rows.get(name) is None:
            raise AccountError(f"no account named {name!r}")

    def disable(self, name: str) -> Account:
        """Refuse the account's token and sessions from now on (it stays, for the audit)."""
        self._existing(name)
        self._rows.set(name, disabled=True, updated=self.clock())
        found = self.get(name)
        assert found is not None
        return found

    def rotate(self, name: str) -> str:
        """A new token for the account; the old one stops working at once."""
        self._existing(name)
        token, token_id, hashed = self._new_token()
        self._rows.set(name, token_id=token_id, token_hash=hashed, updated=self.clock())
        return token

    def authenticate(self, token: str) -> Account | None:
        """The enabled account this personal token belongs to, else None."""
        found = self._find(token)
        if found is None:
            return None
        row, secret, key = found
        if not self._known(key, row) and not self._verify(secret, key, row):
            return None
        return _account(row)

    async def aauthenticate(self, token: str) -> Account | None:
        """``authenticate`` for the event loop: the row is read on the store's thread, and a
        first scrypt check (about 0.1 s) on a thread of its own, so the store's other work
        does not wait behind it."""
        import asyncio

        store = self.store
        found = self._find(token) if store is None else await store.run(self._find, token)
        if found is None:
            return None
        row, secret, key = found
        if not self._known(key, row) and not await asyncio.to_thread(
            self._verify, secret, key, row
        ):
            return None
        return _account(row)

    def _find(self, token: str) -> tuple[dict[str, Any], str, str] | None:
        """The enabled row a well-formed token points at, its secret and its memo key."""
        match = TOKEN.fullmatch(token.strip())
        if match is None:
            return None
        row = self._rows.by_token_id(match.group(1))
        if row is None or row["disabled"]:
            return None
        return row, match.group(2), hashlib.sha256(token.strip().encode()).hexdigest()

    def _known(self, key: str, row: Mapping[str, Any]) -> bool:
        """Whether this token passed against the row's current hash before."""
        with self._lock:
            known = self._verified.get(key)
        return known is not None and hmac.compare_digest(known, str(row["token_hash"]))

    def _verify(self, secret: str, key: str, row: Mapping[str, Any]) -> bool:
        stored = str(row["token_hash"])
        if not verify_token(secret, stored):
            return False
        with self._lock:
            self._verified[key] = stored
            while len(self._verified) > _VERIFIED_MAX:
                self._verified.popitem(last=False)
        return True

    def __repr__(self) -> str:
        return f"Accounts({self._rows if self.store is None else self.store!r})"
