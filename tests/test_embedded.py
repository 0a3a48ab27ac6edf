"""The embedded default: SmolLM2-135M-Instruct run by llama.cpp, through google-genai, with no configuration.

A 135M model's answers are not judged; what is asserted is the protocol, the validity of what constrained
decoding produces, determinism, limits, and that concurrent streams all progress.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google import genai
from google.genai._interactions import BadRequestError

from live import LiveServer
from protocol import check_stream

MODEL = "gemini-3-flash-preview"  # an alias of the embedded default
SEED = Path(__file__).parent / "seed_py"
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


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("embedded"), {}).start()  # no [models]: the default
    yield server
    server.stop()


@pytest.fixture
def client(embedded: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": embedded.url})


def dump(event: Any) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True, by_alias=True)


def stream(client: genai.Client, **body: Any) -> dict[str, Any]:
    return check_stream([dump(e) for e in client.interactions.create(model=MODEL, stream=True, **body)])


def seed_env(embedded: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", embedded.url)
    monkeypatch.setenv("GEMINI_API_KEY", "k")


def test_models_lists_the_real_default(embedded: LiveServer) -> None:
    with embedded.http() as http:
        models = {m["name"]: m for m in http.get("/v1beta/models").json()["models"]}
    default = models["models/smollm2-135m-instruct"]
    assert default["backend"] == "llamacpp" and default["testDouble"] is False
    assert models["models/gemini-3-flash-preview"]["aliasOf"] == "models/smollm2-135m-instruct"


def test_seed_count_example(embedded: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    seed_env(embedded, monkeypatch)
    runpy.run_path(str(SEED / "count.py"))
    assert capsys.readouterr().out.strip()  # model-generated text came through the seed's own loop


def test_seed_thinking_example(embedded: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    seed_env(embedded, monkeypatch)
    runpy.run_path(str(SEED / "thinking.py"))
    out = capsys.readouterr().out
    assert out.startswith("\n--- Step: thought ---\n")
    reasoning, answer = out.split("\n--- Step: model_output ---\n")
    assert reasoning.removeprefix("\n--- Step: thought ---\n").strip() and answer.strip()


def test_seed_function_calling_example_left_to_the_model(
    embedded: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The model decides; whichever it does, the example runs to its end (a second turn if it called)."""
    seed_env(embedded, monkeypatch)
    runpy.run_path(str(SEED / "function_calling.py"))
    capsys.readouterr()


def test_count_stream_is_protocol_perfect_and_deterministic(client: genai.Client) -> None:
    body = {"input": "Count to from 1 to 25.", "generation_config": {"seed": 7, "max_output_tokens": 48}}
    first, second = stream(client, **body), stream(client, **body)
    assert [s["type"] for s in first["steps"]] == ["model_output"]
    assert first["steps"][0]["text"]
    assert first["steps"][0]["text"] == second["steps"][0]["text"]
    greedy = {"input": "Count to from 1 to 25.", "generation_config": {"temperature": 0, "max_output_tokens": 24}}
    assert stream(client, **greedy)["steps"][0]["text"] == stream(client, **greedy)["steps"][0]["text"]


# A schema no other test uses, so that the first request below evaluates its prompt past the chat header.
UNCACHED = {
    "type": "object",
    "properties": {
        "ckf": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"mx": {"type": "string", "maxLength": 3}, "sz": {"type": "string"}},
            },
            "maxItems": 3,
        },
        "t": {"type": "object", "properties": {"dscs": {"type": "string", "enum": ["ruteqkwf", "tkmnlhc", "d", "f"]}}},
    },
    "required": ["ckf"],
}


def test_a_seeded_request_samples_the_same_from_scratch_and_from_the_kv_cache(client: genai.Client) -> None:
    """The first request evaluates its prompt; the second finds all of it in the KV cache. Sampling agrees only
    if their logits are bit-identical, which llama.cpp's flash attention and a prompt's last token evaluated on
    its own both broke (this request diverged within 31 tokens)."""
    tools = [{"type": "function", "name": "tool_0", "description": "Do the thing.", "parameters": UNCACHED}]
    config = {"tool_choice": "any", "seed": 8128, "max_output_tokens": 64}

    def arguments() -> tuple[str, str]:
        events = [dump(e) for e in client.interactions.create(
            model=MODEL, input="Call a tool.", tools=tools, generation_config=config, stream=True
        )]  # fmt: skip
        text = "".join(e["delta"].get("arguments", "") for e in events if e["event_type"] == "step.delta")
        return text, events[-1]["event_type"]

    first, second = arguments(), arguments()
    assert first[0] and first == second


def test_max_output_tokens_makes_it_incomplete(client: genai.Client) -> None:
    done = client.interactions.create(
        model=MODEL, input="Write a long story about Paris.", generation_config={"max_output_tokens": 5, "seed": 1}
    )
    assert done.status == "incomplete"
    assert done.usage.total_output_tokens == 5


def test_stop_sequences(client: genai.Client) -> None:
    body = {"input": "Count from 1 to 25, one number per line.", "generation_config": {"temperature": 0}}
    full = stream(client, **body)["steps"][0]["text"]
    assert "3" in full
    cut = stream(client, input=body["input"], generation_config={"temperature": 0, "stop_sequences": ["3"]})
    text = cut["steps"][0]["text"] if cut["steps"] else ""
    assert "3" not in text and full.startswith(text)
    done = client.interactions.create(
        model=MODEL, input=body["input"], generation_config={"temperature": 0, "stop_sequences": ["3"]}
    )
    assert done.status == "completed" and done.usage.total_output_tokens > 0


def test_forced_function_call_streams_valid_arguments(client: genai.Client) -> None:
    turn = stream(
        client,
        input="What is the weather in Paris right now?",
        tools=[WEATHER],
        generation_config={"tool_choice": "any", "seed": 3},
    )
    assert turn["status"] == "requires_action"
    call = turn["steps"][-1]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert call["start"]["arguments"] == {}
    jsonschema.validate(call["arguments"], WEATHER["parameters"])


def test_seed_function_calling_example_with_any(embedded: LiveServer, client: genai.Client) -> None:
    tools = [WEATHER]
    first = client.interactions.create(
        model=MODEL,
        tools=tools,
        input="What is the weather in Paris right now?",
        generation_config={"tool_choice": "any", "seed": 5},
    )
    call = first.steps[-1]
    assert first.status == "requires_action" and call.type == "function_call"
    second = client.interactions.create(
        model=MODEL,
        previous_interaction_id=first.id,
        generation_config={"seed": 5, "max_output_tokens": 40},
        input=[
            {
                "type": "function_result",
                "name": call.name,
                "call_id": call.id,
                "result": {"content": [{"type": "text", "text": '{"weather": "Sunny and 22°C"}'}]},
            }
        ],
    )
    assert second.status in ("completed", "incomplete")
    assert second.output_text


def test_continuing_a_conversation_reuses_its_cached_prefix(client: genai.Client) -> None:
    config = {"max_output_tokens": 16, "temperature": 0}
    first = client.interactions.create(model=MODEL, input="Tell me about Paris.", generation_config=config)
    assert first.usage.total_cached_tokens == 0 or first.usage.total_cached_tokens < first.usage.total_input_tokens
    previous = first
    for question in ("And Rome?", "And Berlin?"):
        turn = client.interactions.create(
            model=MODEL, input=question, previous_interaction_id=previous.id, generation_config=config
        )
        assert turn.usage.total_input_tokens > previous.usage.total_input_tokens
        # everything up to the previous answer was still in the KV cache
        assert turn.usage.total_cached_tokens >= previous.usage.total_input_tokens
        previous = turn


def test_auto_tool_choice_is_the_models_decision_and_always_valid(client: genai.Client) -> None:
    for question in ("What is the weather in Paris right now?", "Say hello.", "Is it raining in Berlin?"):
        result = stream(
            client, input=question, tools=[WEATHER], generation_config={"seed": 11, "max_output_tokens": 60}
        )
        for step in result["steps"]:
            if step["type"] == "function_call":
                jsonschema.validate(step["arguments"], WEATHER["parameters"])
                assert result["status"] == "requires_action"
            else:
                assert step["type"] == "model_output" and step["text"]


def test_thinking_summaries_are_generated_reasoning(client: genai.Client) -> None:
    result = stream(
        client,
        input="What is the greatest common divisor of 1071 and 462?",
        generation_config={"thinking_summaries": "auto", "thinking_level": "low", "seed": 2, "max_output_tokens": 40},
    )
    kinds = [s["type"] for s in result["steps"]]
    assert kinds == ["thought", "model_output"]
    assert result["steps"][0]["summary"].strip()
    done = client.interactions.get(
        client.interactions.create(
            model=MODEL,
            input="What is 2 + 2?",
            generation_config={"thinking_level": "low", "seed": 2, "max_output_tokens": 20},
        ).id
    )
    thought = done.steps[0]
    assert thought.type == "thought" and thought.signature and not thought.summary
    assert done.usage.total_thought_tokens > 0


def test_json_schema_output(client: genai.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    result = client.interactions.create(
        model=MODEL,
        input="Give the largest city of France and its population.",
        response_format={"type": "text", "schema": schema},
        generation_config={"seed": 4},
    )
    jsonschema.validate(json.loads(result.output_text), schema)


def test_too_long_a_conversation_is_a_400(client: genai.Client) -> None:
    with pytest.raises(BadRequestError, match=r"is \d+ tokens; model .* holds \d+ tokens per sequence"):
        client.interactions.create(model=MODEL, input="word " * 5000)
    # too long to be worth tokenizing: refused by its size, without holding the event loop
    with pytest.raises(BadRequestError, match=r"is over \d+ tokens \(2000\d+ bytes\); model .* holds"):
        client.interactions.create(model=MODEL, input="x" * 2_000_000)


def test_four_concurrent_streams_all_progress(client: genai.Client) -> None:
    async def one(i: int, marks: dict[str, list[float]]) -> None:
        firsts = marks.setdefault("first", [])
        async for event in await client.aio.interactions.create(
            model=MODEL,
            input=f"Tell me a fact about the number {i}.",
            stream=True,
            generation_config={"max_output_tokens": 40, "seed": i},
        ):
            if event.event_type == "step.delta" and len(firsts) < 4 and i not in marks.setdefault("seen", []):
                marks["seen"].append(i)
                firsts.append(time.perf_counter())
        marks.setdefault("ends", []).append(time.perf_counter())

    async def run() -> dict[str, list[float]]:
        marks: dict[str, list[float]] = {}
        await asyncio.gather(*(one(i, marks) for i in range(4)))
        return marks

    marks = asyncio.run(run())
    assert len(marks["first"]) == 4
    assert max(marks["first"]) < min(marks["ends"]), "a stream got its first token only after another finished"


def test_cancel_stops_generation(client: genai.Client) -> None:
    events = client.interactions.create(
        model=MODEL,
        input="Write a very long story.",
        stream=True,
        generation_config={"max_output_tokens": 2000, "seed": 1},
    )
    interaction_id, deltas = None, 0
    for event in events:
        if event.event_type == "interaction.created":
            interaction_id = event.interaction.id
        if event.event_type == "step.delta":
            deltas += 1
            break
    assert client.interactions.cancel(interaction_id).status == "cancelled"
    rest = [dump(e) for e in events]
    deltas += sum(e["event_type"] == "step.delta" for e in rest)
    assert rest[-1]["event_type"] == "interaction.completed" and rest[-1]["interaction"]["status"] == "cancelled"
    assert deltas < 200


def test_a_schema_no_grammar_can_enforce_is_a_400(client: genai.Client) -> None:
    tool = {
        "type": "function",
        "name": "pick",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}},
    }
    with pytest.raises(BadRequestError, match="multipleOf"):
        client.interactions.create(model=MODEL, input="Pick.", tools=[tool], generation_config={"tool_choice": "any"})


def test_server_tools_are_offered_to_the_model_under_its_grammar(client: genai.Client) -> None:
    """code_execution's 4000-character code argument once made a grammar llama.cpp could not parse, and every
    such run failed. The model may answer or call; whatever it calls is well-formed and runs."""
    for seed in (1, 2):
        result = stream(
            client,
            input="Compute 12345 * 6789 with Python.",
            tools=[{"type": "code_execution"}],
            generation_config={"seed": seed, "max_output_tokens": 60},
        )
        assert result["status"] in ("completed", "incomplete", "budget_exceeded"), result
        calls = [s for s in result["steps"] if s["type"] == "code_execution_call"]
        results = [s for s in result["steps"] if s["type"] == "code_execution_result"]
        assert [s["call_id"] for s in results] == [s["id"] for s in calls]
        assert all(isinstance(s["arguments"]["code"], str) for s in calls)


def test_a_model_served_with_converted_weights(tmp_path: Path) -> None:
    """``convert_weights`` serves the model through llama.cpp's quantizer: converted once at start-up into the
    cache directory, then a model like any other (same protocol, same determinism)."""
    cache = tmp_path / "cache"
    options = {"backend": "llamacpp", "convert_weights": "q4_k_m", "cache_dir": cache, "parallel": 1}
    server = LiveServer(tmp_path, {"models.smollm2-q4k": options}).start()
    try:
        client = genai.Client(api_key="k", http_options={"base_url": server.url})
        body = {"input": "Count from 1 to 10.", "generation_config": {"temperature": 0, "max_output_tokens": 16}}
        runs = [
            check_stream([dump(e) for e in client.interactions.create(model="smollm2-q4k", stream=True, **body)])
            for _ in range(2)
        ]
        assert runs[0]["steps"][0]["text"] and runs[0]["steps"][0]["text"] == runs[1]["steps"][0]["text"]
        assert [p.name.endswith(".q4_k_m.gguf") for p in cache.iterdir()] == [True]
    finally:
        server.stop()


def test_an_unknown_weight_type_is_a_config_error(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, {"models.m": {"backend": "llamacpp", "convert_weights": "q3_weird"}})
    with pytest.raises(RuntimeError, match="convert_weights"):
        server.start()
