"""The ``openai`` backend end to end: google-genai → the live server → a real OpenAI-compatible server on loopback.

The real upstream is llama-cpp-python's own server (``python -m llama_cpp.server``) serving the embedded
SmolLM2 GGUF: the seed's examples' shapes (streaming text, a forced function call and its result through
``previous_interaction_id``, JSON-schema output) and failover from a dead port. The upstream behaviours no real
small server shows on demand (recorded vLLM/SGLang streams, reasoning, usage, an upstream that hangs, refuses the
key, or is killed partway) come from a small fake (``fixtures/openai/fake_upstream.py``), also a real process on
loopback that the tests kill when they need it dead.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from google import genai
from google.genai._interactions import BadRequestError

from live import LiveServer, free_port
from openinteractions.backends.llamacpp.models import default_model_path
from protocol import check_stream

FAKE = Path(__file__).parent / "fixtures" / "openai" / "fake_upstream.py"
SEED = Path(__file__).parent / "seed_py"
SECRET = "sk-upstream-7d41c9a0e2b84f65a3"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
        "required": ["location"],
    },
}


class Process:
    """A subprocess that is ready once a line containing ``ready`` shows on its stderr."""

    def __init__(self, args: list[str], ready: str) -> None:
        self.args, self.ready = args, ready
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def start(self) -> Process:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if self.ready in line:
                break
        else:
            raise RuntimeError(f"{self.args[:3]} did not start:\n" + "".join(self.log[-30:]))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def fake(port: int, log: Path) -> Process:
    return Process([sys.executable, str(FAKE), str(port), str(log)], "Uvicorn running on").start()


def openai_model(urls: list[str], **options: Any) -> dict[str, Any]:
    return {"backend": "openai", "base_urls": urls, **options}


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("dead", "llama", "fake", "pair_a", "pair_b", "solo")}


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def llama(ports: dict[str, int]) -> Iterator[Process]:
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path())]
    args += ["--host", "127.0.0.1", "--port", str(ports["llama"]), "--n_ctx", "4096"]
    process = Process(args, "Uvicorn running on").start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def fake_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake") / "requests.jsonl"


@pytest.fixture(scope="module")
def fake_main(ports: dict[str, int], fake_log: Path) -> Iterator[Process]:
    process = fake(ports["fake"], fake_log)
    yield process
    process.kill()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int], llama: Process, fake_main: Process
) -> Iterator[LiveServer]:
    main = [url(ports["fake"])]
    models = {
        # The dead port first: the first request meets it, fails over, and marks it down.
        "smol": openai_model(
            [url(ports["dead"]), url(ports["llama"])],
            model="smollm2",
            json_schema_style="json_object",  # llama-cpp-python's server rejects {"type": "json_schema"}
            supports_required_tool_choice=False,  # ...and ignores tool_choice "required"
            max_output_tokens=200,
            health_check_interval=0,
            aliases=["gemini-3-flash-preview"],
        ),
        "fake-parallel": openai_model(main, model="fixture:vllm_tool_calls_parallel"),
        "fake-reasoning": openai_model(main, model="fixture:sglang_reasoning_content", supports_reasoning=True),
        "fake-usage": openai_model(main, model="fixture:vllm_text"),
        "fake-usage-httpx": openai_model(main, model="fixture:vllm_text", http_transport="httpx"),
        "fake-error": openai_model(main, model="fixture:vllm_error_in_stream"),
        "fake-hang": openai_model(main, model="hang"),
        "fake-401": openai_model(main, model="status:401", api_key=SECRET),
        "fake-pair": openai_model([url(ports["pair_a"]), url(ports["pair_b"])], model="text", health_check_interval=0),
        "fake-solo": openai_model([url(ports["solo"])], model="hang"),
    }
    sections = {f"models.{name}": values for name, values in models.items()}
    live = LiveServer(tmp_path_factory.mktemp("openai"), sections).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def dump(event: Any) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True, by_alias=True)


def stream(client: genai.Client, model: str, **body: Any) -> dict[str, Any]:
    return check_stream([dump(e) for e in client.interactions.create(model=model, stream=True, **body)])


def raw_stream(server: LiveServer, body: dict[str, Any], on_event: Any = None) -> list[Any]:
    """The SSE payloads of a create, parsed as they arrive; ``on_event`` sees each one."""
    payloads: list[Any] = []
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        http.stream("POST", "/v1beta/interactions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                payloads.append(data if data == "[DONE]" else json.loads(data))
                if on_event is not None:
                    on_event(payloads[-1])
    return payloads


# ---- against llama-cpp-python's server ---------------------------------------------------------------


def test_models_lists_the_openai_backend(server: LiveServer) -> None:
    with server.http() as http:
        models = {m["name"]: m for m in http.get("/v1beta/models").json()["models"]}
    assert models["models/smol"]["backend"] == "openai" and models["models/smol"]["testDouble"] is False
    assert models["models/gemini-3-flash-preview"]["aliasOf"] == "models/smol"


def test_seed_count_example(server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    runpy.run_path(str(SEED / "count.py"))
    assert capsys.readouterr().out.strip()


def test_streaming_text_is_protocol_perfect(client: genai.Client) -> None:
    result = stream(client, "smol", input="Count to from 1 to 25.", generation_config={"max_output_tokens": 24})
    assert [s["type"] for s in result["steps"]] == ["model_output"]
    assert result["steps"][0]["text"].strip()
    assert result["status"] in ("completed", "incomplete")


def test_forced_function_call_round_trip(client: genai.Client) -> None:
    first = stream(
        client,
        "smol",
        input="What is the weather in Paris right now?",
        tools=[WEATHER],
        generation_config={"tool_choice": "any", "max_output_tokens": 60},
    )
    assert first["status"] == "requires_action"
    call = first["steps"][-1]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert call["start"]["arguments"] == {}
    jsonschema.validate(call["arguments"], WEATHER["parameters"])
    created = client.interactions.create(
        model="smol",
        tools=[WEATHER],
        input="What is the weather in Paris right now?",
        generation_config={"tool_choice": "any", "max_output_tokens": 60},
    )
    step = created.steps[-1]
    assert created.status == "requires_action" and step.type == "function_call"
    second = client.interactions.create(
        model="smol",
        previous_interaction_id=created.id,
        generation_config={"max_output_tokens": 40},
        input=[
            {
                "type": "function_result",
                "name": step.name,
                "call_id": step.id,
                "result": {"content": [{"type": "text", "text": '{"weather": "Sunny and 22°C"}'}]},
            }
        ],
    )
    assert second.status in ("completed", "incomplete")
    assert second.output_text


def test_json_schema_output(client: genai.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    result = client.interactions.create(
        model="smol",
        input="Give the largest city of France and its population.",
        response_format={"type": "text", "schema": schema},
        generation_config={"max_output_tokens": 120},
    )
    jsonschema.validate(json.loads(result.output_text), schema)


def test_a_dead_upstream_is_failed_over_and_every_request_completes(
    server: LiveServer, client: genai.Client, ports: dict[str, int]
) -> None:
    for i in range(4):
        done = client.interactions.create(model="smol", input=f"Say {i}.", generation_config={"max_output_tokens": 8})
        assert done.status in ("completed", "incomplete") and done.output_text
    assert any(f"upstream {url(ports['dead'])} marked down" in line for line in server.log)


def test_fields_the_upstream_cannot_honour_are_400s(client: genai.Client) -> None:
    with pytest.raises(BadRequestError, match="thinking_level"):
        client.interactions.create(model="smol", input="hi", generation_config={"thinking_level": "high"})
    with pytest.raises(BadRequestError, match="allowed_tools"):
        time_tool = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
        client.interactions.create(
            model="smol", input="hi", tools=[WEATHER, time_tool], generation_config={"tool_choice": "any"}
        )
    with pytest.raises(BadRequestError, match="image input"):
        client.interactions.create(
            model="smol", input=[{"type": "image", "data": "iVBORw0KGgo=", "mime_type": "image/png"}]
        )


# ---- against the fake upstream ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["fake-usage", "fake-usage-httpx"])  # the lean transport, and httpx's own
def test_usage_comes_from_the_upstream(client: genai.Client, model: str) -> None:
    done = client.interactions.create(model=model, input="hi")
    assert done.output_text == "Hello, world!"
    usage = done.usage
    assert (usage.total_input_tokens, usage.total_output_tokens, usage.total_cached_tokens) == (12, 4, 8)
    assert usage.total_tokens == 16


def test_chunks_read_together_go_out_as_one_delta(server: LiveServer) -> None:
    # The fake writes the whole recorded stream at once: its three content chunks arrive in one read.
    payloads = raw_stream(server, {"model": "fake-usage", "input": "hi"})
    deltas = [p["delta"] for p in payloads if isinstance(p, dict) and p["event_type"] == "step.delta"]
    assert deltas == [{"type": "text", "text": "Hello, world!"}]


def test_text_read_together_with_an_upstream_error_still_goes_out_before_the_error(server: LiveServer) -> None:
    payloads = raw_stream(server, {"model": "fake-error", "input": "hi"})
    kinds = [p if p == "[DONE]" else p["event_type"] for p in payloads]
    assert kinds[2:] == ["step.start", "step.delta", "step.stop", "error", "[DONE]"]
    assert payloads[3]["delta"] == {"type": "text", "text": "Par"}
    assert "The engine died unexpectedly." in payloads[-2]["error"]["message"]


def test_reasoning_becomes_a_thought_step_with_summaries(client: genai.Client) -> None:
    result = stream(
        client, "fake-reasoning", input="Capital of France?", generation_config={"thinking_summaries": "auto"}
    )
    assert [s["type"] for s in result["steps"]] == ["thought", "model_output"]
    assert result["steps"][0]["summary"] == "Okay, the capital is Paris."
    assert result["steps"][1]["text"] == "Paris."
    done = client.interactions.create(model="fake-reasoning", input="Capital of France?")
    assert done.steps[0].type == "thought" and done.steps[0].signature and not done.steps[0].summary
    assert done.usage.total_thought_tokens == 9 and done.usage.total_output_tokens == 3


def test_parallel_calls_and_their_results_round_trip(client: genai.Client, fake_log: Path) -> None:
    first = stream(client, "fake-parallel", input="Weather and time in Paris?", tools=[WEATHER])
    assert first["status"] == "requires_action"
    calls = [s for s in first["steps"] if s["type"] == "function_call"]
    assert [(c["name"], c["id"], c["arguments"]) for c in calls] == [
        ("get_weather", "chatcmpl-tool-5b2e", {"location": "Paris"}),
        ("get_time", "chatcmpl-tool-77a1", {"tz": "Europe/Paris"}),
    ]
    created = client.interactions.create(model="fake-parallel", input="Weather and time in Paris?", tools=[WEATHER])
    results = [
        {"type": "function_result", "name": step.name, "call_id": step.id, "result": f"result of {step.name}"}
        for step in created.steps
    ]
    second = client.interactions.create(model="fake-parallel", previous_interaction_id=created.id, input=results)
    assert second.status == "completed" and second.output_text == "The weather is nice."
    asked, sent = (json.loads(line)["body"] for line in fake_log.read_text().splitlines()[-2:])
    assert asked["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}]
    assert asked["stream_options"] == {"include_usage": True} and "tool_choice" not in asked
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent["messages"][1]["tool_calls"]] == ["chatcmpl-tool-5b2e", "chatcmpl-tool-77a1"]
    assert [(m["tool_call_id"], m["content"]) for m in sent["messages"][2:]] == [
        ("chatcmpl-tool-5b2e", "result of get_weather"),
        ("chatcmpl-tool-77a1", "result of get_time"),
    ]


def test_an_upstream_4xx_is_an_error_event_that_never_shows_the_key(
    server: LiveServer, client: genai.Client, fake_log: Path
) -> None:
    payloads = raw_stream(server, {"model": "fake-401", "input": "hi"})
    assert payloads[-1] == "[DONE]"
    error = payloads[-2]
    assert error["event_type"] == "error" and error["error"]["code"] == "permission_denied"
    assert "answered HTTP 401: Incorrect API key provided: [redacted]" in error["error"]["message"]
    interaction_id = payloads[0]["interaction"]["id"]
    assert client.interactions.get(interaction_id).status == "failed"
    assert json.loads(fake_log.read_text().splitlines()[-1])["authorization"] == f"Bearer {SECRET}"
    with server.http() as http:
        stored = http.get(f"/v1beta/interactions/{interaction_id}").text
    assert "7d41c9a0" not in stored and "7d41c9a0" not in "".join(server.log)


def test_cancelling_closes_the_upstream_request(client: genai.Client, ports: dict[str, int]) -> None:
    tag = "cancel-me-please"
    events = client.interactions.create(model="fake-hang", input=tag, stream=True)
    interaction_id = None
    for event in events:
        if event.event_type == "interaction.created":
            interaction_id = event.interaction.id
        if event.event_type == "step.delta":
            break
    assert client.interactions.cancel(interaction_id).status == "cancelled"
    with httpx.Client(timeout=30) as http:
        answer = http.get(f"http://127.0.0.1:{ports['fake']}/control/disconnected", params={"tag": tag, "timeout": 20})
    assert answer.json() == {"disconnected": True}


def test_one_of_two_upstreams_killed_every_request_still_completes(
    client: genai.Client, ports: dict[str, int], tmp_path: Path
) -> None:
    a, b = fake(ports["pair_a"], tmp_path / "a.jsonl"), fake(ports["pair_b"], tmp_path / "b.jsonl")
    try:
        for _ in range(2):
            assert client.interactions.create(model="fake-pair", input="hi").output_text == "one two three"
        b.kill()
        for _ in range(6):
            assert client.interactions.create(model="fake-pair", input="hi").output_text == "one two three"
        assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 7  # one each before the kill, then all
    finally:
        a.kill()
        b.kill()


def test_the_only_upstream_killed_mid_stream_fails_the_interaction(
    server: LiveServer, client: genai.Client, ports: dict[str, int], tmp_path: Path
) -> None:
    solo = fake(ports["solo"], tmp_path / "solo.jsonl")
    try:

        def kill_on_first_text(payload: Any) -> None:
            if isinstance(payload, dict) and payload.get("event_type") == "step.delta":
                solo.kill()

        payloads = raw_stream(server, {"model": "fake-solo", "input": "hi"}, kill_on_first_text)
    finally:
        solo.kill()
    kinds = [p if p == "[DONE]" else p["event_type"] for p in payloads]
    assert kinds[-2:] == ["error", "[DONE]"]
    assert "step.stop" in kinds  # the open step was closed before the error
    error = payloads[-2]["error"]
    assert error["code"] == "unavailable" and "broke the stream" in error["message"]
    done = client.interactions.get(payloads[0]["interaction"]["id"])
    assert done.status == "failed" and done.steps[0].content[0].text.startswith("Hel")
