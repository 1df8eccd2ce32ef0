"""Error bodies map to the right exception, name method and path, and never leak a secret."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from closeguard.tools.client import CloseClient, OAuthCredentials
from closeguard.tools.errors import (
    BadRequest,
    CloseAPIError,
    ConfigError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PaymentRequired,
    ResponseFormatError,
    ServerError,
    Unauthorized,
    UnsupportedMediaType,
)
from closeguard.tools.settings import Settings
from tests._secrets import api_key
from tests.conftest import TEST_API_KEY, TEST_BASE_URL


def answer(status: int, **kwargs: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, **kwargs)

    return handler


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(exc)
        assert secret not in repr(exc)
        assert secret not in repr(exc.args)


async def test_400_carries_errors_and_field_errors(make_client: Any) -> None:
    body = {
        "error": "Invalid status",
        "errors": ["status_id is not valid"],
        "field-errors": {"status_id": "Unknown status.", "name": "Too long."},
    }
    client = make_client(answer(400, json=body))
    with pytest.raises(BadRequest) as info:
        await client.leads.update("lead_1", {"status_id": "stat_nope"})
    exc = info.value
    assert exc.status_code == 400
    assert exc.errors == ["status_id is not valid"]
    assert exc.field_errors == {"status_id": "Unknown status.", "name": "Too long."}
    message = str(exc)
    assert message.startswith("PUT /lead/lead_1/ failed: 400 Bad Request: Invalid status")
    assert "status_id: Unknown status." in message
    assert_no_secret(exc, TEST_API_KEY)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, Unauthorized),
        (402, PaymentRequired),
        (403, Forbidden),
        (404, NotFound),
        (405, MethodNotAllowed),
        (415, UnsupportedMediaType),
        (500, ServerError),
        (418, CloseAPIError),
    ],
)
async def test_status_maps_to_subclass_with_method_path_and_close_message(
    make_client: Any, status: int, cls: type[CloseAPIError]
) -> None:
    client = make_client(answer(status, json={"error": f"close says {status}"}))
    with pytest.raises(cls) as info:
        await client.tasks.delete("task_9")
    exc = info.value
    assert type(exc) is cls
    assert exc.status_code == status and exc.method == "DELETE"
    assert f"DELETE /task/task_9/ failed: {status}" in str(exc)
    assert f"close says {status}" in str(exc)
    assert_no_secret(exc, TEST_API_KEY)
    assert "authorization" not in exc.response.request.headers


async def test_non_json_error_body_is_summarised(make_client: Any) -> None:
    page = "<html>\n <body>Bad   gateway " + "x" * 500 + "</body></html>"
    client = make_client(answer(502, text=page))
    with pytest.raises(ServerError) as info:
        await client.post("/lead/", json={"name": "x"})
    message = str(info.value)
    assert "POST /lead/ failed: 502 Bad Gateway: <html> <body>Bad gateway" in message
    assert "\n" not in message and len(message) < 300
    assert info.value.body == page


async def test_secret_echoed_by_server_is_scrubbed(make_client: Any) -> None:
    client = make_client(answer(401, json={"error": f"Invalid API key {TEST_API_KEY}"}))
    with pytest.raises(Unauthorized) as info:
        await client.users.me()
    assert_no_secret(info.value, TEST_API_KEY)
    assert "***" in str(info.value)


async def test_success_with_a_non_json_body_raises_a_response_format_error(
    make_client: Any,
) -> None:
    client = make_client(answer(200, text="<html>maintenance</html>"))
    with pytest.raises(ResponseFormatError, match="not JSON") as info:
        await client.get("/me/")
    assert (info.value.method, info.value.path) == ("GET", "/me/")
    assert info.value.raw == "<html>maintenance</html>"


async def test_empty_bodies_decode_to_empty_dict(make_client: Any) -> None:
    client = make_client(answer(204))
    assert await client.delete("lead/lead_1") == {}
    assert await client.leads.delete("lead_1") is None


def test_missing_credential_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOSE_API_KEY", "CLOSE_OAUTH_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        CloseClient(settings=Settings(_env_file=None), transport=httpx.MockTransport(answer(200)))
    message = str(info.value)
    assert "CLOSE_API_KEY" in message and "\n" not in message


async def test_credential_and_base_url_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOSE_API_KEY", api_key("_env"))
    monkeypatch.setenv("CLOSE_BASE_URL", "http://sim.local/api/v1/")
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers["authorization"]))
        return httpx.Response(200, json={"id": "user_1"})

    async with CloseClient(transport=httpx.MockTransport(handler)) as client:
        assert client.base_url == "http://sim.local/api/v1"
        await client.users.me()
    assert seen == [
        (
            "http://sim.local/api/v1/me/",
            "Basic " + base64.b64encode(f"{api_key('_env')}:".encode()).decode(),
        )
    ]
    assert api_key() not in repr(client)


async def test_api_key_is_basic_username_with_blank_password(make_client: Any) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"id": "user_1"})

    client = make_client(handler)
    await client.users.me()
    scheme, _, encoded = seen[0].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{TEST_API_KEY}:"


def test_repr_shows_base_url_and_auth_kind_never_secrets() -> None:
    transport = httpx.MockTransport(answer(200))
    keyed = CloseClient(TEST_API_KEY, base_url=TEST_BASE_URL, transport=transport)
    assert repr(keyed) == f"CloseClient(base_url='{TEST_BASE_URL}', auth='api_key')"
    creds = OAuthCredentials(
        access_token="acc_tok_123456",
        refresh_token="ref_tok_123456",
        client_id="client_1",
        client_secret="csecret_123456",
    )
    oauth = CloseClient(oauth=creds, base_url=TEST_BASE_URL, transport=transport)
    text = repr(oauth) + repr(creds) + repr(oauth.__dict__.get("_oauth"))
    assert "auth='oauth'" in repr(oauth)
    for secret in ("acc_tok_123456", "ref_tok_123456", "csecret_123456"):
        assert secret not in text


@pytest.mark.parametrize(
    "body", [{"error": "Unauthorized"}, {"error": "Unauthorized: provide a valid API key."}]
)
async def test_401_message_says_unauthorized_once(make_client: Any, body: Any) -> None:
    client = make_client(answer(401, json=body))
    with pytest.raises(Unauthorized) as info:
        await client.users.me()
    message = str(info.value)
    assert message.lower().count("unauthorized") == 1, message
    assert message.startswith("GET /me/ failed: 401 Unauthorized")
