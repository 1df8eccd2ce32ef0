"""Shared fixtures: fake time, a CloseClient on an httpx.MockTransport, a temp store; and the
suite-wide secrets drill (``tests/_secrets.py``: every test under known fake keys, every
surface scanned for them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from closeguard.store import Store
from closeguard.tools.client import CloseClient
from closeguard.tools.clock import FakeClock

pytest.register_assert_rewrite("tests._secrets")
from tests._secrets import api_key  # noqa: E402

pytest_plugins = ["tests._secrets", "pytester"]

TEST_API_KEY = api_key("_test")
TEST_BASE_URL = "https://api.close.test/api/v1"

Handler = Callable[[httpx.Request], Any]


class FakeTime(FakeClock):
    """A ``FakeClock`` (time moves only when someone sleeps on it) that records every sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make_client(fake_time: FakeTime) -> AsyncIterator[Callable[..., CloseClient]]:
    """``make_client(handler, **kwargs)``: a client on fake time against a MockTransport."""
    made: list[CloseClient] = []

    def make(handler: Handler, **kwargs: Any) -> CloseClient:
        kwargs.setdefault("base_url", TEST_BASE_URL)
        if "oauth" not in kwargs:
            kwargs.setdefault("api_key", TEST_API_KEY)
        client = CloseClient(
            transport=httpx.MockTransport(handler),
            clock=fake_time,
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A SQLite store in a temp dir, also set as CLOSEGUARD_STORE_URL (never the user's)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", url)
    s = Store(url)
    yield s
    s.dispose()


@pytest.fixture(autouse=True)
def _refuse_real_models() -> Iterator[None]:
    """The global switch: no test may build a real (networked) chat model."""
    from closeguard.agent.testing import refuse_real_models

    with refuse_real_models():
        yield
