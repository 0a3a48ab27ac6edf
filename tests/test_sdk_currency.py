"""What google-genai 3.6.1 can call that this server does not serve answers in the API's error shape, with a
message that says what instead; and the newest schema fields are accepted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import errors

from live import LiveServer

KEY = "currency-key-0001"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("currency"), {
        "auth": {"api_keys": [KEY]},
        "models.m": {"backend": "scripted", "inline": True},
        "tools.code_execution": {"enabled": False},
    })  # fmt: skip
    yield live.start()
    live.stop()


@pytest.mark.filterwarnings("ignore:Live Interactions usage")
def test_ephemeral_auth_tokens_are_a_clear_501(server: LiveServer) -> None:
    client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
    with pytest.raises(Exception) as raised:
        client.interactions.auth_tokens.create(interaction_id="v1_x", expire_time="2030-01-01T00:00:00Z")
    assert "ephemeral auth tokens" in str(raised.value) and "501" in str(raised.value)
    for method, path in (("POST", "/v1beta/auth_tokens"), ("DELETE", "/v1beta/interactions/v1_x/auth_tokens/t")):
        answer = httpx.request(method, server.url + path, headers={"x-goog-api-key": KEY}, json={})
        assert answer.status_code == 501
        assert answer.json()["error"]["status"] == "UNIMPLEMENTED"


@pytest.mark.filterwarnings("ignore:Live Interactions usage")
def test_the_live_websocket_is_a_clear_501_not_a_missing_interaction(server: LiveServer) -> None:
    upgrade = {"x-goog-api-key": KEY, "connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    answer = httpx.get(f"{server.url}/v1beta/interactions/live", headers=upgrade)
    assert answer.status_code == 501, answer.text
    assert "Live Interactions API" in answer.json()["error"]["message"]
    assert httpx.get(f"{server.url}/v1beta/interactions/live").status_code == 401  # authenticated like any call

    async def connect() -> None:
        client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
        async with client.aio.interactions.connect("v1_x"):
            pass

    with pytest.raises(genai.interactions.APIWebSocketError):  # the handshake's 501 (above), as the SDK says it
        asyncio.run(connect())


@pytest.mark.filterwarnings("ignore:The SDK's token creation")
def test_errors_are_typed_by_the_sdk(server: LiveServer) -> None:
    client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
    with pytest.raises(errors.APIError):
        client.auth_tokens.create(config={"uses": 1})
