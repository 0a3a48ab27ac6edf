"""google-genai (Python) against the live server: every interactions call, errors, resume, cancel."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from google import genai
from google.genai._interactions import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
)

from live import LiveServer, sse_events

MODEL = "gemini-3-flash-preview"


def script(*events: dict[str, Any]) -> str:
    return json.dumps({"script": list(events)})


RICH = script(
    {"thought": "Plan: answer, then call."},
    {"text": "Hello"},
    {"text": ", world"},
    {"call": {"name": "lookup", "arguments": {"q": "x", "n": 2}, "chunks": 3}},
)
LOOKUP = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


def dump(event: Any) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True, by_alias=True)


def server_fields(interaction: Any) -> dict[str, Any]:
    """What the server sent: create() adds the client-side continuation bookkeeping."""
    out = dump(interaction)
    out.pop("continuation_ids", None)
    out.get("usage", {}).pop("initial_input_tokens", None)
    return out


def test_non_stream_create_and_get(client: genai.Client) -> None:
    created = client.interactions.create(model=MODEL, input=RICH, tools=[LOOKUP])
    assert created.status == "requires_action"
    assert [s.type for s in created.steps] == ["thought", "model_output", "function_call"]
    assert created.steps[1].content[0].text == "Hello, world"
    assert created.steps[2].arguments == {"q": "x", "n": 2}
    assert created.steps[0].signature
    got = client.interactions.get(created.id)
    assert dump(got) == server_fields(created)
    assert client.interactions.get(created.id, include_input=True).input == RICH


def test_stream_then_get_stream_then_resume_from_every_position(client: genai.Client) -> None:
    streamed = [dump(e) for e in client.interactions.create(model=MODEL, input=RICH, tools=[LOOKUP], stream=True)]
    interaction_id = streamed[0]["interaction"]["id"]
    ids = [e["event_id"] for e in streamed]
    assert ids == [str(n) for n in range(1, len(streamed) + 1)]
    replayed = [dump(e) for e in client.interactions.get(interaction_id, stream=True)]
    assert replayed == streamed
    assert [dump(e) for e in client.interactions.get(interaction_id, stream=True, include_input=False)] == streamed
    for position, event in enumerate(streamed):
        tail = client.interactions.get(interaction_id, stream=True, last_event_id=event["event_id"])
        assert [dump(e) for e in tail] == streamed[position + 1 :], f"resume after {event['event_id']}"


def test_resume_a_live_run_then_cancel(client: genai.Client) -> None:
    stream = client.interactions.create(model=MODEL, input="hang on", stream=True)
    head = []
    for event in stream:
        head.append(dump(event))
        if event.event_type == "step.delta":
            break
    interaction_id = head[0]["interaction"]["id"]
    follower = client.interactions.get(interaction_id, stream=True, last_event_id=head[1]["event_id"])
    assert client.interactions.get(interaction_id).status == "in_progress"
    cancelled = client.interactions.cancel(interaction_id)
    assert cancelled.status == "cancelled"
    assert cancelled.steps[0].content[0].text == "waiting"
    rest = [dump(e) for e in stream]
    assert [e["event_type"] for e in rest] == ["step.stop", "interaction.completed"]
    assert rest[-1]["interaction"]["status"] == "cancelled"
    assert [dump(e) for e in follower] == head[2:] + rest
    assert client.interactions.get(interaction_id).status == "cancelled"
    with pytest.raises(BadRequestError, match="only a running interaction can be cancelled"):
        client.interactions.cancel(interaction_id)


def test_a_call_cut_off_by_a_cancel_is_left_out_of_the_interaction(client: genai.Client) -> None:
    """Shown with made-up arguments, the call would invite the client to run it and answer it."""
    cut = script({"text": "Let me look."}, {"call": {"name": "lookup", "fragments": ['{"q": ', '"x']}}, {"hang": True})
    events = []
    stream = client.interactions.create(model=MODEL, input=cut, tools=[LOOKUP], stream=True)
    for event in stream:
        events.append(dump(event))
        if event.event_type == "step.delta" and getattr(event.delta, "arguments", None) == '"x':
            break
    interaction_id = events[0]["interaction"]["id"]
    cancelled = client.interactions.cancel(interaction_id)
    assert [e["event_type"] for e in map(dump, stream)] == ["step.stop", "interaction.completed"]
    assert cancelled.status == "cancelled"
    assert [step.type for step in cancelled.steps] == ["model_output"]
    assert dump(client.interactions.get(interaction_id)) == server_fields(cancelled)
    call = next(e["step"] for e in events if e["event_type"] == "step.start" and e["step"]["type"] == "function_call")
    answer = {"type": "function_result", "call_id": call["id"], "result": "found"}
    with pytest.raises(BadRequestError, match="does not match any function_call"):
        client.interactions.create(model=MODEL, input=[answer], previous_interaction_id=interaction_id)


def test_background_create_returns_at_once_and_the_run_is_followed_then_cancelled(server: LiveServer) -> None:
    # Waiting for this run to end would wait for its time limit: a short timeout turns that into a failure.
    client = genai.Client(api_key="test-key", http_options={"base_url": server.url, "timeout": 10_000})
    created = client.interactions.create(model=MODEL, input=script({"text": "a"}, {"hang": True}), background=True)
    assert created.status == "in_progress"
    assert client.interactions.get(created.id).status == "in_progress"
    follower = client.interactions.get(created.id, stream=True)
    first = [dump(next(follower)) for _ in range(4)]
    assert [e["event_type"] for e in first] == ["interaction.created", "interaction.status_update",
                                                "step.start", "step.delta"]  # fmt: skip
    assert client.interactions.cancel(created.id).status == "cancelled"
    rest = [dump(e) for e in follower]
    assert rest[-1]["event_type"] == "interaction.completed"
    assert rest[-1]["interaction"]["status"] == "cancelled"


def test_a_background_stream_outlives_its_client_and_resumes(client: genai.Client) -> None:
    slow = script({"text": "a"}, {"sleep_ms": 300}, {"text": "b"})
    stream = client.interactions.create(model=MODEL, input=slow, stream=True, background=True)
    head = []
    for event in stream:
        head.append(dump(event))
        if event.event_type == "step.delta":
            break
    stream.close()  # the connection drops; a run without background would be cancelled now
    tail = client.interactions.get(head[0]["interaction"]["id"], stream=True, last_event_id=head[-1]["event_id"])
    rest = [dump(e) for e in tail]
    assert [int(e["event_id"]) for e in head + rest] == list(range(1, len(head) + len(rest) + 1))
    assert rest[-1]["interaction"]["status"] == "completed"
    assert [e["delta"]["text"] for e in head + rest if e["event_type"] == "step.delta"] == ["a", "b"]


def test_delete(client: genai.Client) -> None:
    created = client.interactions.create(model=MODEL, input="hello")
    client.interactions.delete(created.id)
    with pytest.raises(NotFoundError):
        client.interactions.get(created.id)
    with pytest.raises(NotFoundError):
        client.interactions.delete(created.id)


def test_typed_errors(client: genai.Client, server: LiveServer) -> None:
    with pytest.raises(BadRequestError) as bad:
        client.interactions.create(model=MODEL, input="x", extra_body={"bogus": 1})
    assert bad.value.status_code == 400
    assert bad.value.body["error"]["status"] == "INVALID_ARGUMENT"
    assert "bogus" in bad.value.body["error"]["message"]
    with pytest.raises(NotFoundError):
        client.interactions.get("v1_missing")
    with pytest.raises(NotFoundError, match="no-such-model"):
        client.interactions.create(model="no-such-model", input="x")
    with pytest.raises(BadRequestError):
        client.interactions.create(model=MODEL, input="x", stream=True, extra_body={"stream_options": {}})


def test_auth(tmp_path: Any) -> None:
    keyed = LiveServer(
        tmp_path,
        {
            "auth": {"api_keys": ["alice-key-123456", "bob-key-12345678"]},
            "models.gemini-3-flash-preview": {"backend": "scripted", "inline": True},
        },
    ).start()
    try:
        alice = genai.Client(api_key="alice-key-123456", http_options={"base_url": keyed.url})
        bob = genai.Client(api_key="bob-key-12345678", http_options={"base_url": keyed.url})
        mallory = genai.Client(api_key="mallory-key-0000", http_options={"base_url": keyed.url})
        mine = alice.interactions.create(model=MODEL, input=script({"text": "private"}))
        assert alice.interactions.get(mine.id).status == "completed"
        with pytest.raises(NotFoundError):
            bob.interactions.get(mine.id)
        with pytest.raises(NotFoundError):
            bob.interactions.delete(mine.id)
        with pytest.raises(NotFoundError):
            bob.interactions.create(model=MODEL, input="x", previous_interaction_id=mine.id)
        with pytest.raises(PermissionDeniedError):
            mallory.interactions.get(mine.id)
        with keyed.http() as http:
            response = http.get(f"/v1beta/interactions/{mine.id}")
            assert response.status_code == 401
            assert response.json()["error"]["status"] == "UNAUTHENTICATED"
            assert http.get(f"/v1beta/interactions/{mine.id}?key=alice-key-123456").status_code == 200
        keyless = genai.Client(api_key="x", http_options={"base_url": keyed.url, "headers": {"x-goog-api-key": ""}})
        with pytest.raises(AuthenticationError):
            keyless.interactions.get(mine.id)
    finally:
        keyed.stop()


def test_unknown_event_is_skipped_by_seed_style_code(client: genai.Client) -> None:
    seen, text = [], ""
    for event in client.interactions.create(model=MODEL, input="send a future event", stream=True):
        seen.append(event.event_type)
        if event.event_type == "step.delta" and event.delta.type == "text":
            text += event.delta.text
    assert text == "before after"
    assert "UNKNOWN" in seen  # the SDK's name for an event type it does not know


def test_mid_stream_error_then_done_and_failed(client: genai.Client, server: LiveServer) -> None:
    events = [dump(e) for e in client.interactions.create(model=MODEL, input="fail midway", stream=True)]
    assert [e["event_type"] for e in events][-3:] == ["step.delta", "step.stop", "error"]
    assert events[-1]["error"] == {
        "code": "gateway_timeout",
        "message": "Deadline expired before operation could complete.",
    }
    interaction_id = events[0]["interaction"]["id"]
    got = client.interactions.get(interaction_id)
    assert got.status == "failed"
    assert got.errors[0].code == "gateway_timeout"
    with server.http() as http:
        raw = http.get(f"/v1beta/interactions/{interaction_id}", params={"stream": "true"}).text
    assert raw.endswith("event: done\ndata: [DONE]\n\n")
    assert sse_events(raw)[-2]["event_type"] == "error"


def test_the_last_events_and_done_go_out_in_one_http_chunk(server: LiveServer) -> None:
    body = json.dumps({"model": MODEL, "input": "hello", "stream": True, "store": False}).encode()
    head = "POST /v1beta/interactions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    request = head.encode() + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        while reader.readline() not in (b"\r\n", b""):
            pass
        chunks = []  # the body's HTTP chunks: one per write of the server
        while size := int(reader.readline().split(b";")[0], 16):
            chunks.append(reader.read(size + 2)[:-2])
    assert chunks[-1].endswith(b"event: done\ndata: [DONE]\n\n")
    assert b"event: interaction.completed" in chunks[-1]
    assert b"[DONE]" not in b"".join(chunks[:-1])


def test_client_disconnect_cancels_the_run(server: LiveServer) -> None:
    body = {"model": MODEL, "input": "hang", "stream": True}
    with server.http() as http:
        with http.stream("POST", "/v1beta/interactions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: interaction.created"
            data = json.loads(next(lines)[6:])
        interaction_id = data["interaction"]["id"]
        # Following the log ends when the run ends: the disconnect must have cancelled it.
        tail = sse_events(http.get(f"/v1beta/interactions/{interaction_id}", params={"stream": "true"}).text)
    assert tail[-1] == "[DONE]"
    assert tail[-2]["interaction"]["status"] == "cancelled"


def test_async_client(client: genai.Client) -> None:
    async def go() -> list[str]:
        out = []
        async for event in await client.aio.interactions.create(model=MODEL, input="hi", stream=True):
            out.append(event.event_type)
        return out

    assert asyncio.run(go())[-1] == "interaction.completed"


def test_every_api_version_prefix(server: LiveServer) -> None:
    for version in ("v1", "v1beta", "v1alpha"):
        c = genai.Client(api_key="k", http_options={"base_url": server.url, "api_version": version})
        assert c.interactions.create(model=MODEL, input="hi").status == "completed"
    with server.http() as http:
        assert http.post("/nonsense/interactions", json={}).status_code == 404


def test_models_list_marks_the_test_double(server: LiveServer) -> None:
    with server.http() as http:
        models = http.get("/v1beta/models").json()["models"]
    names = {m["name"] for m in models}
    assert {"models/gemini-3-flash-preview", "models/gemini-2.5-flash"} <= names
    assert all(m["testDouble"] for m in models)
    assert all(m["description"].startswith("TEST DOUBLE") for m in models)


def test_models_list_pages(server: LiveServer) -> None:
    with server.http() as http:
        everything = http.get("/v1beta/models").json()["models"]
        first = http.get("/v1beta/models", params={"pageSize": 2}).json()
        second = http.get("/v1beta/models", params={"pageSize": 2, "pageToken": first["nextPageToken"]}).json()
    assert first["models"] + second["models"] == everything[:4]
    sdk = genai.Client(api_key="k", http_options={"base_url": server.url})
    names = [m.name for m in sdk.models.list()]
    assert names == [m["name"] for m in everything]


def test_openapi_document(server: LiveServer) -> None:
    with server.http() as http:
        doc = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"CreateInteractionRequest", "Interaction", "InteractionEvent", "Error"} <= set(schemas)
    assert "/{version}/interactions" in doc["paths"]


def test_healthz(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
