"""Bad input gets the right 4xx with a message that names the problem; the server keeps serving and nothing
stored changes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from live import LiveServer

MODEL = "gemini-3-flash-preview"
ALICE = {"x-goog-api-key": "alice-key-123456"}
BOB = {"x-goog-api-key": "bob-key-12345678"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp("guarded"),
        {
            "server": {"max_request_bytes": 4096},
            "limits": {"max_input_items": 20},
            "store": {"sqlite_exclusive": False},  # db_rows() reads the file while the server runs
            "auth": {"api_keys": ["alice-key-123456", "bob-key-12345678"]},
            f"models.{MODEL}": {
                "backend": "scripted",
                "inline": True,
                "script": Path(__file__).parent / "fixtures" / "seed.json",
            },
        },
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice_interaction(guarded: LiveServer) -> str:
    with guarded.http(headers=ALICE) as http:
        response = http.post("/v1beta/interactions", json={"model": MODEL, "input": "hello"})
    assert response.status_code == 200
    return str(response.json()["id"])


def body(**fields: Any) -> bytes:
    return json.dumps({"model": MODEL, "input": "hi", **fields}).encode()


CASES = [
    ("malformed JSON", b'{"model": "x", "input": ', 400, "Invalid JSON payload"),
    ("not an object", b"[1, 2]", 400, "must be a JSON object"),
    ("empty body", b"", 400, "Invalid JSON payload"),
    ("NaN is not JSON", body(generation_config={"temperature": float("nan")}), 400, "Invalid JSON payload"),
    (
        "Infinity inside free-form parameters",
        body(tools=[{"type": "function", "name": "f", "parameters": {"default": float("inf")}}]),
        400,
        "Invalid JSON payload",
    ),
    (
        "a number beyond double",
        body(tools=[{"type": "function", "name": "f"}]).replace(b'"f"', b'"f", "x": 1e999'),
        400,
        "Invalid JSON payload",
    ),
    ("an empty stop sequence", body(generation_config={"stop_sequences": [""]}), 400, "stop_sequences[0]"),
    ("wrong type for stream", body(stream="yes"), 400, "'stream'"),
    (
        "wrong type for temperature",
        body(generation_config={"temperature": "hot"}),
        400,
        "'generation_config.temperature'",
    ),
    ("temperature out of range", body(generation_config={"temperature": 7}), 400, "'generation_config.temperature'"),
    ("input of the wrong type", body(input=5), 400, "input must be a string, an object or a list"),
    ("text that is not a string", body(input=[{"type": "text", "text": 3}]), 400, "'input[0].text'"),
    ("unknown field", body(bogus=True), 400, "Unknown name 'bogus'"),
    (
        "union tried member by member, reported as one field",
        body(generation_config={"tool_choice": "required"}),
        400,
        "Invalid value at 'generation_config.tool_choice': Input should be 'auto', 'any', 'none' or 'validated'; "
        "or Input should be an object",
    ),
    (
        "a content object where a list belongs",
        body(input=[{"role": "user", "content": {"text": "hi"}}]),
        400,
        "Invalid value at 'input[0].content': Input should be a valid string; or Input should be a valid list",
    ),
    ("a step without its type", body(input={}), 400, "Invalid value at 'input[0]': 'type' is required"),
    (
        "untyped text with an unknown field",
        body(input=[{"text": "hi", "foo": 1}]),
        400,
        "Unknown name 'foo' at 'input[0].foo'",
    ),
    (
        "one step object with a bad block",
        body(input={"type": "user_input", "content": [{"type": "text"}]}),
        400,
        "Invalid value at 'input[0].content[0].text': Field required",
    ),
    (
        "a step with a role",
        body(input=[{"type": "user_input", "role": "user", "content": []}]),
        400,
        "input[0] has both 'role' (a turn) and 'type' ('user_input')",
    ),
    ("unknown generation_config field", body(generation_config={"topK": 3}), 400, "topK"),
    ("model with agent", body(agent="deep-research-preview-04-2026"), 400, "mutually exclusive"),
    ("no model", json.dumps({"input": "hi"}).encode(), 400, "'model' is required"),
    ("no input", json.dumps({"model": MODEL}).encode(), 400, "'input' is required"),
    ("empty input", body(input=[]), 400, "input is an empty list"),
    (
        "agent_config without agent",
        body(agent_config={"type": "dynamic"}),
        400,
        "'model' cannot be combined with 'agent_config'",
    ),
    (
        "unknown step type",
        body(input=[{"type": "bogus_step", "content": []}]),
        400,
        "input[0].type: unknown type 'bogus_step'",
    ),
    (
        "steps mixed with content",
        body(input=[{"type": "user_input"}, {"type": "text", "text": "a"}]),
        400,
        "mixes contents and steps",
    ),
    ("unknown tool type", body(tools=[{"type": "teleport"}]), 400, "'tools[0]'"),
    ("more tools than the bound", body(tools=[5] * 600), 400, "'tools': List should have at most 512 items"),
    (
        "function result named after another function",
        body(
            input=[
                {"type": "function_call", "id": "c1", "name": "f", "arguments": {}},
                {"type": "function_result", "call_id": "c1", "name": "g", "result": "x"},
            ]
        ),
        400,
        "input[1].name 'g' differs from the name of call 'c1' ('f')",
    ),
    ("function without name", body(tools=[{"type": "function"}]), 400, "'tools[0].name' is required"),
    ("function name beyond ASCII", body(tools=[{"type": "function", "name": "café"}]), 400, "'tools[0].name' 'café'"),
    ("duplicate function", body(tools=[{"type": "function", "name": "f"}] * 2), 400, "declared twice"),
    (
        "tool_choice names unknown function",
        body(generation_config={"tool_choice": {"allowed_tools": {"mode": "any", "tools": ["ghost"]}}}),
        400,
        "unknown function 'ghost'",
    ),
    ("background without store", body(background=True, store=False), 400, "'background' needs 'store'"),
    ("service tier", body(service_tier="priority"), 400, "'service_tier'"),
    (
        "safety threshold",
        body(safety_settings=[{"type": "harassment", "threshold": "block_only_high"}]),
        400,
        "no safety classifier",
    ),
    ("image output", body(response_format={"type": "image"}), 400, "image output"),
    (
        "a response format without type is text, as Python sends it",  # JS sends what the user wrote
        body(response_format={"mime_type": "application/json"}),
        400,
        "structured output",
    ),
    (
        "structured output on scripted",
        body(response_format={"type": "text", "schema": {"type": "object"}}),
        400,
        "structured output",
    ),
    (
        "image input on scripted",
        body(input=[{"type": "image", "data": "AAAA", "mime_type": "image/png"}]),
        400,
        "image input",
    ),
    (
        "image inside a function result on scripted",
        body(
            input=[
                {"type": "function_call", "id": "c1", "name": "f", "arguments": {}},
                {
                    "type": "function_result",
                    "call_id": "c1",
                    "result": [{"type": "image", "data": "AAAA", "mime_type": "image/png"}],
                },
            ]
        ),
        400,
        "image input (input step 1)",
    ),
    ("continuation token", body(continuation_token="abc"), 400, "continuation_token"),
    ("unknown model", body(model="gemini-9-ultra"), 404, "models/gemini-9-ultra is not found"),
    ("unknown previous interaction", body(previous_interaction_id="v1_nope"), 404, "'v1_nope' was not found"),
    ("body over the limit", body(input="x" * 5000), 413, "exceeds the limit: 4096 bytes"),
    ("too many content blocks", body(input=[{"type": "text", "text": ""}] * 21), 400, "more than 20 steps,"),
    (
        "too many items deep in a step",
        body(input=[{"type": "google_search_result", "call_id": "c", "result": [{}] * 20}]),
        400,
        "(limits.max_input_items)",
    ),
    (
        "too many blocks across steps",
        body(input=[{"type": "user_input", "content": [{"type": "text", "text": ""}] * 10}] * 2),
        400,
        "(limits.max_input_items)",
    ),
    (
        "too many blocks in one step",
        body(input={"type": "user_input", "content": [{"type": "text", "text": ""}] * 20}),
        400,
        "(limits.max_input_items)",
    ),
]


@pytest.mark.parametrize("name, payload, status, message", CASES, ids=[c[0] for c in CASES])
def test_create_rejects(
    guarded: LiveServer, alice_interaction: str, name: str, payload: bytes, status: int, message: str
) -> None:
    before = guarded.db_rows()
    with guarded.http(headers={**ALICE, "content-type": "application/json"}) as http:
        response = http.post("/v1beta/interactions", content=payload)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == status
        assert message in error["message"], error["message"]
        assert error["status"] in {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}
        assert (
            http.post("/v1beta/interactions", json={"model": MODEL, "input": "hi", "store": False}).status_code == 200
        )
    assert guarded.db_rows() == before


def test_foreign_previous_interaction_is_not_found(guarded: LiveServer, alice_interaction: str) -> None:
    before = guarded.db_rows()
    with guarded.http(headers=BOB) as http:
        response = http.post(
            "/v1beta/interactions", json={"model": MODEL, "input": "hi", "previous_interaction_id": alice_interaction}
        )
    assert response.status_code == 404
    assert alice_interaction in response.json()["error"]["message"]
    assert guarded.db_rows() == before


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/v1beta/interactions/{id}?stream=maybe", 400, "'stream' must be 'true' or 'false'"),
        ("GET", "/v1beta/interactions/{id}?colour=red", 400, "Unknown query parameter 'colour'"),
        ("GET", "/v1beta/interactions/{id}?stream=true&last_event_id=abc", 400, "'last_event_id'"),
        ("GET", "/v1beta/interactions/{id}?stream=true&last_event_id=%C2%B2", 400, "'last_event_id'"),
        ("GET", "/v1beta/interactions/{id}?stream=true&include_input=true", 400, "'include_input' applies"),
        ("GET", "/v1beta/models?pageSize=ten", 400, "'pageSize'"),
        ("DELETE", "/v1beta/interactions/{id}?force=true", 400, "This endpoint takes none"),
        ("GET", "/v1beta/interactions/{id}?stream=true&last_event_id=999", 400, "not an event of this interaction"),
        ("GET", "/v1beta/interactions/{id}?last_event_id=1", 400, "only be used with stream=true"),
        ("POST", "/v1beta/interactions/{id}/cancel", 400, "only a running interaction can be cancelled"),
        ("PUT", "/v1beta/interactions/{id}", 405, "Method Not Allowed"),
        ("GET", "/v1beta/nothing-here", 404, "no such path"),
        ("GET", "/v1beta/interactions/{id}?stream=true&last_event_id=" + "9" * 4301, 400, "not an event of this"),
        ("GET", "/v1beta/models?pageSize=" + "9" * 4301 + "&pageToken=" + "9" * 4301, 200, ""),
        ("POST", "/v1beta/interactions/", 404, "no such path"),  # not a redirect that echoes the Host header
        ("GET", "/v1beta/interactions/{id}/", 404, "no such path"),
    ],
)
def test_other_requests_reject(
    guarded: LiveServer, alice_interaction: str, method: str, path: str, status: int, message: str
) -> None:
    before = guarded.db_rows()
    with guarded.http(headers=ALICE) as http:
        response = http.request(method, path.format(id=alice_interaction))
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["models"] == []
        return
    assert message in response.json()["error"]["message"]
    if status == 405:
        assert {"GET", "DELETE"} <= set(response.headers["allow"].replace(" ", "").split(","))
    assert guarded.db_rows() == before


def test_keys_are_checked_before_anything_else(guarded: LiveServer) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        assert http.post("/v1beta/interactions", content=b"{bad").status_code == 401
        assert (
            http.post("/v1beta/interactions", content=b"{bad", headers={"x-goog-api-key": "wrong-key-1"}).status_code
            == 403
        )


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1beta/interactions HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
        b"POST /v1beta/interactions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["signed length", "length and chunked"],
)
def test_requests_that_are_not_http_get_the_json_error_shape(guarded: LiveServer, head: bytes) -> None:
    host, port = guarded.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"content-type: application/json" in headers.lower()
    error = json.loads(body)["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and error["message"]
