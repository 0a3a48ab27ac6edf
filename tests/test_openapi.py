"""The published OpenAPI document against the server's real answers, checked by schemathesis (the checker the
fuzz test uses) on hand-picked requests: every kind of event stream, and the bodies where the document and the
server once disagreed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis.schemas import BaseSchema

from conftest import SEED_MODEL
from live import LiveServer, sse_events

CREATE = ("/{version}/interactions", "POST")
GET = ("/{version}/interactions/{id}", "GET")


@pytest.fixture(scope="module")
def document(server: LiveServer) -> BaseSchema:
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def conforms(
    document: BaseSchema, operation: tuple[str, str], response: httpx.Response | schemathesis.Response
) -> None:
    """Raises with every way ``response`` departs from what the document says ``operation`` answers."""
    path, method = operation
    document[path][method].validate_response(response)


def create(server: LiveServer, **body: Any) -> httpx.Response:
    with server.http() as http:
        return http.post("/v1beta/interactions", json={"model": SEED_MODEL, **body})


@pytest.mark.parametrize(
    "body",
    [
        {"input": "hello"},
        {
            "input": "What is the greatest common divisor of 1071 and 462?",
            "generation_config": {"thinking_summaries": "auto"},
        },
        {"input": "weather?", "tools": [{"type": "function", "name": "get_weather"}]},
        {"input": "please fail midway"},
        {"input": json.dumps({"script": [{"text": "a"}, {"finish": "max_tokens"}]})},
    ],
    ids=["text", "thought", "function_call", "error", "incomplete"],
)
def test_event_streams_conform(server: LiveServer, document: BaseSchema, body: dict[str, Any]) -> None:
    """Each frame of a stream is an item of the documented text/event-stream: its ``event`` names its type and
    its ``data`` is that event's schema (the document once gave the event schema to the whole frame, which
    failed on the first one, ``interaction.created``)."""
    streamed = create(server, stream=True, **body)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    conforms(document, CREATE, streamed)
    events = sse_events(streamed.text)
    assert events[-1] == "[DONE]"
    interaction_id = events[0]["interaction"]["id"]  # type: ignore[index]
    with server.http() as http:
        replayed = http.get(f"/v1beta/interactions/{interaction_id}", params={"stream": "true"})
        conforms(document, GET, replayed)
        conforms(document, GET, http.get(f"/v1beta/interactions/{interaction_id}"))


def test_a_frame_that_breaks_its_event_schema_is_caught(server: LiveServer, document: BaseSchema) -> None:
    """The check above can fail: a frame whose data is not its event's schema is reported."""
    streamed = create(server, stream=True, input="hello")
    broken = streamed.content.replace(b'"event_type":"interaction.created"', b'"event_type":"interaction.made"', 1)
    assert broken != streamed.content
    forged = schemathesis.Response.from_any(streamed)
    forged.content = broken
    with pytest.raises(AssertionError, match="SSE event violates schema"):
        conforms(document, CREATE, forged)


@pytest.fixture(scope="module")
def request_schema(server: LiveServer) -> jsonschema.Validator:
    with server.http() as http:
        doc = http.get("/openapi.json").json()
    registry: Registry[Any] = Registry().with_resource("urn:doc", DRAFT202012.create_resource(doc))
    ref = {"$ref": "urn:doc#/components/schemas/CreateInteractionRequest"}
    return jsonschema.Draft202012Validator(ref, registry=registry)


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {}},  # the SDKs' TextResponseFormat: type defaults to "text"
        {"response_format": [{"mime_type": "text/plain"}]},
        {"response_format": {"aspect_ratio": "1:1"}},  # an image format's field without its tag is text's
        {"tools": [{"search_types": ["web_search"]}]},  # a tool without its tag
        {"input": None},
        {"input": [{"text": "hi"}]},  # content as JS sends it, without its tag
        {"input": [{"type": "text"}]},
        {"input": {"role": "user", "content": "hi"}},
        {"input": []},
        {"input": [{"role": "user", "content": "hi"}, {"type": "text", "text": "hi"}]},
        {"agent": "deep-research"},
        {"cached_content": "cachedContents/1"},
        {"service_tier": "flex"},
        {"response_format": {}, "response_mime_type": "text/plain"},
        {"response_format": [], "response_mime_type": "text/plain"},
        {"tools": [{"type": "file_search"}]},
        {"tools": [{"type": "function"}]},
        {"tools": [{"type": "function", "name": "a b"}]},
        {"tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]},
        {"tools": [{"type": "function", "name": "f", "defer_loading": True}]},
        {"background": True, "store": False},
        {"background": True},
        {"safety_settings": [{"type": "harassment", "threshold": "block_only_high"}]},
        {"safety_settings": [{"type": "harassment", "threshold": "off"}]},
        {"response_modalities": ["text", "audio"]},
        {"response_format": {"type": "audio", "sample_rate": 16000, "mime_type": "audio/wav"}},
        {"response_format": {"type": "audio", "sample_rate": 0}},
        {"response_format": {"type": "audio", "bit_rate": 64000}},
        {"response_format": {"type": "audio", "delivery": "uri"}},
        {"response_modalities": ["audio"], "generation_config": {"speech_config": {"speakers": [{"language": "en"}]}}},
        {"response_modalities": ["audio"], "generation_config": {"speech_config": [{"language": "en"}]}},
        {"response_modalities": ["audio"], "generation_config": {"speech_config": {"speakers": [{}, {}]}}},
        {"response_modalities": ["audio"], "generation_config": {"speech_config": {"voice": ""}}},
        {"response_modalities": ["audio"], "generation_config": {"speech_config": {"tone": "warm"}}},
        {"generation_config": {"image_config": {"aspect_ratio": "1:1"}}},  # image_config without image output
        {"response_modalities": ["video"]},
    ],
)
def test_document_accepts_what_the_server_accepts(
    server: LiveServer, request_schema: jsonschema.Validator, extra: dict[str, Any]
) -> None:
    """The document describes what this server accepts: a tagged union's tag is required except where the
    server fills it in (text content and text response formats), so ``response_format: {}`` is valid; the
    input shapes; and no field that no configuration of this server implements."""
    body = {"input": "hello", **extra}
    answer = create(server, **body)
    valid = request_schema.is_valid({"model": SEED_MODEL, **body})
    assert valid == (answer.status_code == 200), answer.text


@pytest.mark.parametrize(
    "extra",
    [
        {"response_modalities": ["image"]},  # this server's model has no image backend
        {"response_format": {"type": "image"}},
        {"response_format": [{"type": "text"}, {"type": "text"}]},  # one format of each type
        {"generation_config": {"speech_config": {}}},  # without audio output
    ],
)
def test_the_document_leaves_these_to_the_server(
    server: LiveServer, request_schema: jsonschema.Validator, extra: dict[str, Any]
) -> None:
    """What depends on the configuration (an image backend), and two rules the document leaves out: one format of
    each type (JSON Schema would say it with counted 'contains', which the fuzzer cannot generate from), and
    speech_config only with audio output (with it and image_config's rule both, schemathesis cannot generate a
    create at all). The server answers 400."""
    body = {"input": "hello", **extra}
    assert request_schema.is_valid({"model": SEED_MODEL, **body})
    assert create(server, **body).status_code == 400


AGENT = "deep-research-pro-preview-12-2025"
_RESEARCH = {"agent": AGENT, "input": "the history of the Colosseum", "background": True}


@pytest.mark.parametrize(
    "body",
    [
        _RESEARCH,
        {**_RESEARCH, "agent": f"agents/{AGENT}"},
        {**_RESEARCH, "model": None, "agent_config": {"type": "deep-research", "thinking_summaries": "auto"}},
        {**_RESEARCH, "agent_config": {"type": "deep-research", "collaborative_planning": True}},
        {**_RESEARCH, "background": None},
        {**_RESEARCH, "background": False},
        {**_RESEARCH, "model": SEED_MODEL},
        {**_RESEARCH, "generation_config": {"temperature": 0.5}},
        {**_RESEARCH, "tools": [{"type": "google_search"}]},
        {**_RESEARCH, "response_format": {"type": "text"}},
        {**_RESEARCH, "response_mime_type": "text/plain"},
        {**_RESEARCH, "agent_config": {"type": "dynamic"}},
        {**_RESEARCH, "agent_config": {"type": "deep-research", "enable_bigquery_tool": True}},
        {**_RESEARCH, "agent_config": {"type": "deep-research", "visualization": "always"}},
        {**_RESEARCH, "agent_config": {"type": "deep-research", "depth": 3}},
        {**_RESEARCH, "agent_config": {"thinking_summaries": "auto"}},
        {"model": SEED_MODEL, "input": "hello", "agent_config": {"type": "deep-research"}},
        {"input": "hello"},
    ],
)
def test_document_accepts_the_agent_requests_the_server_accepts(
    server: LiveServer, request_schema: jsonschema.Validator, body: dict[str, Any]
) -> None:
    """An agent request: 'agent' instead of 'model', in the background, without what its program decides (the
    model's settings, tools, output format); 'agent_config' only with an agent, of the deep-research type."""
    with server.http() as http:
        answer = http.post("/v1beta/interactions", json=body)
    assert request_schema.is_valid(body) == (answer.status_code == 200), answer.text


def test_every_operation_is_named_and_says_what_it_answers(server: LiveServer) -> None:
    with server.http() as http:
        doc = http.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["operationId"], (method, path)
            for status, response in operation["responses"].items():
                assert response["content"], (method, path, status)


def test_the_links_of_a_created_interaction_lead_where_they_say(server: LiveServer) -> None:
    """create -> get, stream, cancel, delete, continue: each link's parameters filled from the create's request
    and response, as a client (or the fuzzer) following the document does."""
    with server.http() as http:
        doc = http.get("/openapi.json").json()
    operations = {op["operationId"]: (path, method) for path, ops in doc["paths"].items() for method, op in ops.items()}
    links = doc["paths"]["/{version}/interactions"]["post"]["responses"]["200"]["links"]
    assert set(links) == {"get", "stream", "cancel", "delete", "continue"}
    statuses = {}
    for name in ["get", "stream", "cancel", "continue", "delete"]:  # delete last: it ends the others
        created = create(server, input="hello").json()
        link = links[name]
        path, method = operations[link["operationId"]]
        values = {"$request.path.version": "v1beta", "$response.body#/id": created["id"]}
        values["$response.body#/model"] = created["model"]
        params = {key: values.get(value, value) for key, value in link["parameters"].items()}
        for key, value in params.items():
            if key.startswith("path."):
                path = path.replace("{" + key[5:] + "}", value)
        query = {key[6:]: value for key, value in params.items() if key.startswith("query.")}
        body = {key: values[value] for key, value in link.get("requestBody", {}).items()}
        with server.http() as http:
            response = http.request(method.upper(), path, params=query, json=body or None)
        statuses[name] = response.status_code
        if name == "continue":
            body = dict(body, input="and again")
            with server.http() as http:
                response = http.request(method.upper(), path, params=query, json=body)
            assert response.json()["previous_interaction_id"] == created["id"]
            statuses[name] = response.status_code
        if name == "stream":
            assert response.headers["content-type"].startswith("text/event-stream")
    # the run was over before the cancel: a 400 FAILED_PRECONDITION, as documented
    assert statuses == {"get": 200, "stream": 200, "cancel": 400, "continue": 200, "delete": 200}
