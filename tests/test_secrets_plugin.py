"""The secrets plugin (tests/_secrets.py) catches a known key on each surface it scans and
lets the allowlisted places be.

The leaking tests run in a pytest subprocess under *other* known keys
(``CLOSEGUARD_TEST_API_KEY``/``CLOSEGUARD_TEST_SIGNATURE_KEY``), so what they print can never
trip this session's own scan.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from closeguard.simulator import Simulator
from tests._secrets import KNOWN_API_KEY, SIGNATURE_PREFIX, _allowed_cli_text, mask

INNER_API_KEY = "api_INNERpluginTESTkeyNOTtheSUITEs"
INNER_SIGNATURE_KEY = "c0ffee00" * 8
REPO = Path(__file__).resolve().parents[1]

INNER_TESTS = """
import asyncio
import logging
import sqlite3

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient
import httpx
import typer
from typer.testing import CliRunner

from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.store.cursors import Cursors, StoredSubscription
from closeguard.tools.errors import ConfigError
from tests._secrets import KNOWN_API_KEY, KNOWN_SIGNATURE_KEY, SIGNATURE_PREFIX, api_key


def test_log_line():
    logging.getLogger("closeguard.demo").debug("calling Close with %s", api_key("_x"))


def test_stdout():
    print("the webhook key is", KNOWN_SIGNATURE_KEY)


def test_cli_output():
    app = typer.Typer()

    @app.command()
    def show() -> None:
        typer.echo(f"key {KNOWN_API_KEY}")

    assert CliRunner().invoke(app, []).exit_code == 0


def test_error_message():
    ConfigError(f"bad key {KNOWN_API_KEY}")  # built, not even raised


def test_http_page():
    async def page(request):
        return HTMLResponse(f"<p>key: {KNOWN_API_KEY}</p>")

    with TestClient(Starlette(routes=[Route("/", page)])) as client:
        assert client.get("/").status_code == 200


def test_store_file(tmp_path):
    db = sqlite3.connect(tmp_path / "report.db")
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES (?)", (f"sig={SIGNATURE_PREFIX}",))
    db.commit()
    db.close()


def test_known_keys_and_allowlisted_places(tmp_path):
    sim = Simulator(seed=1, leads=1)
    assert sim.api_key == KNOWN_API_KEY and sim.add_api_key().startswith(KNOWN_API_KEY)

    async def create_hook():
        async with sim.http_client() as http:
            made = await http.post("/webhook/", json={
                "url": "http://127.0.0.1:9/hook",
                "events": [{"object_type": "lead", "action": "created"}],
            })
            listed = await http.get("/webhook/")
        return made.json(), listed.text

    hook, listed = asyncio.run(create_hook())
    assert hook["signature_key"].startswith(SIGNATURE_PREFIX)
    assert SIGNATURE_PREFIX not in listed

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    Cursors(store).save_subscription(
        StoredSubscription(hook["id"], hook["url"], (("lead", "created"),), hook["signature_key"])
    )
    store.dispose()
    sim.save(tmp_path / "world.json")

    def mock(request):
        return httpx.Response(401, text=f"Invalid API key {KNOWN_API_KEY}")

    with httpx.Client(transport=httpx.MockTransport(mock)) as client:
        assert client.get("http://close.test/").status_code == 401
"""


@pytest.fixture(params=[(), ("-n", "2")], ids=["one-process", "xdist"])
def inner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> pytest.RunResult:
    """The leaking tests in one process, and under pytest-xdist as ``make test`` runs them
    (the workers' counts and leaks reach the controller, which scans the files once)."""
    monkeypatch.setenv("CLOSEGUARD_TEST_API_KEY", INNER_API_KEY)
    monkeypatch.setenv("CLOSEGUARD_TEST_SIGNATURE_KEY", INNER_SIGNATURE_KEY)
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + path if path else ""))
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester.runpytest_subprocess(
        "-p", "tests._secrets", "-p", "no:cacheprovider", "-rA", *request.param
    )


def test_a_leak_on_each_surface_fails_its_test_and_the_allowlisted_places_pass(
    inner: pytest.RunResult,
) -> None:
    outcomes = {
        m[2]: m[1]
        for m in re.finditer(
            r"^(PASSED|FAILED|ERROR) test_inner\.py::(\w+)", inner.stdout.str(), re.M
        )
    }
    text = inner.stdout.str()
    assert outcomes == {
        "test_log_line": "FAILED",
        "test_stdout": "FAILED",
        "test_cli_output": "FAILED",
        "test_error_message": "FAILED",
        "test_http_page": "FAILED",
        "test_store_file": "PASSED",
        "test_known_keys_and_allowlisted_places": "PASSED",
    }, text
    inner.assert_outcomes(passed=2, failed=5)
    assert inner.ret == pytest.ExitCode.TESTS_FAILED
    surfaces = (
        "log records",
        "captured outputs",
        "CLI outputs",
        "error messages",
        "HTTP responses",
    )
    for surface in surfaces:
        assert re.search(rf"known key leaked:\n  [^\n]* in {surface} \(test_inner\.py::", text)
    assert "API key in log records (test_inner.py::test_log_line, logger closeguard.demo)" in text
    assert "secrets: leaks outside tests or in files" in text
    leaks = [line for line in text.splitlines() if line.startswith("signature key in files")]
    assert len(leaks) == 1 and "report.db notes.body" in leaks[0], text
    assert "<KEY>" in leaks[0] and INNER_SIGNATURE_KEY[:32] not in leaks[0]
    # seven: the log line is seen as a record and again in the test's captured log
    summary = [line for line in text.splitlines() if line.startswith("secrets: 7 leaks in ")]
    assert len(summary) == 1 and "3 HTTP responses" in summary[0], text


def test_the_suite_runs_under_the_known_keys() -> None:
    sim = Simulator(seed=2, leads=1)
    assert sim.api_key == KNOWN_API_KEY
    second = sim.add_api_key()
    assert second != sim.api_key and KNOWN_API_KEY in second
    assert sim.state.ids.hex_secret().startswith(SIGNATURE_PREFIX)


def test_sim_serve_may_print_its_key_and_nothing_else_may() -> None:
    banner = f"Close simulator at http://127.0.0.1:1/api/v1\nAPI key: {KNOWN_API_KEY}\n"
    assert KNOWN_API_KEY not in _allowed_cli_text(["sim", "serve"], banner)
    assert KNOWN_API_KEY in _allowed_cli_text(["run"], banner)
    assert mask(f"x{KNOWN_API_KEY}y") == "x<KEY>y"
