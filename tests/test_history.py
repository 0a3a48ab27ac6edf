"""A chain of turns hands the backend the exact, whole history, in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai._interactions import BadRequestError, NotFoundError

from live import LiveServer

MODEL = "gemini-3-flash-preview"
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def script(*events: dict[str, Any]) -> str:
    return json.dumps({"script": list(events)})


def user(text: str) -> dict[str, Any]:
    return {"type": "user_input", "content": [{"type": "text", "text": text}]}


def recorded(server: LiveServer) -> list[dict[str, Any]]:
    path = server.workdir / "requests.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def dump_steps(interaction: Any) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json", exclude_none=True, by_alias=True) for s in interaction.steps]


def test_five_turn_chain_replays_everything(client: genai.Client, server: LiveServer) -> None:
    turns = [
        [
            user(
                script(
                    {"thought": "first thought"},
                    {"text": "one"},
                    {"call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call0001"}},
                )
            )
        ],
        [
            {"type": "function_result", "call_id": "call0001", "name": "get_weather", "result": {"temp": 22}},
            user(script({"thought": "second thought"}, {"text": "two"})),
        ],
        [user(script({"text": "three"}, {"call": {"name": "get_weather", "arguments": {}, "id": "call0002"}}))],
        [
            {"type": "function_result", "call_id": "call0002", "result": "rain", "is_error": False},
            user(script({"thought": "fourth"}, {"text": "four"})),
        ],
        [user(script({"text": "five"}))],
    ]
    expected: list[dict[str, Any]] = []
    previous = None
    for turn in turns:
        before = len(recorded(server))
        interaction = client.interactions.create(
            model=MODEL,
            input=turn,
            tools=[TOOL],
            previous_interaction_id=previous,
            system_instruction="be exact",
        )
        seen = recorded(server)[before:]
        assert len(seen) == 1
        assert seen[0]["history"] == expected + turn
        assert seen[0]["system_instruction"] == "be exact"
        expected += turn + dump_steps(client.interactions.get(interaction.id))
        previous = interaction.id
    thoughts = [s for s in expected if s["type"] == "thought"]
    assert len(thoughts) == 3 and all(s["signature"] for s in thoughts)
    assert seen[0]["thoughts"] == ["first thought", "second thought", "fourth"]
    assert [s["type"] for s in expected].count("function_call") == 2


def test_stateless_history_round_trips_thought_signatures(client: genai.Client, server: LiveServer) -> None:
    first = client.interactions.create(
        model=MODEL, input=script({"thought": "secret plan"}, {"text": "ok"}), store=False
    )
    with pytest.raises(NotFoundError):
        client.interactions.get(first.id)
    history = [user(script({"thought": "secret plan"}, {"text": "ok"})), *dump_steps(first)]
    before = len(recorded(server))
    client.interactions.create(model=MODEL, input=[*history, user(script({"text": "next"}))], store=False)
    seen = recorded(server)[before]
    assert seen["history"] == [*history, user(script({"text": "next"}))]
    assert seen["thoughts"] == ["secret plan"]

    forged = [dict(s) for s in history]
    signature = forged[1]["signature"]
    forged[1]["signature"] = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    with pytest.raises(BadRequestError, match="thought signature is invalid"):
        client.interactions.create(model=MODEL, input=[*forged, user("again")], store=False)


def test_function_result_must_answer_a_known_call(client: genai.Client) -> None:
    first = client.interactions.create(model=MODEL, input="hello")
    with pytest.raises(BadRequestError, match="does not match any function_call"):
        client.interactions.create(
            model=MODEL,
            previous_interaction_id=first.id,
            input=[{"type": "function_result", "call_id": "nope", "result": "x"}],
        )


def test_chain_with_a_deleted_link_is_refused(client: genai.Client, tmp_path: Path) -> None:
    a = client.interactions.create(model=MODEL, input="hello")
    b = client.interactions.create(model=MODEL, input="hello", previous_interaction_id=a.id)
    client.interactions.delete(a.id)
    with pytest.raises(NotFoundError, match="was deleted or has expired"):
        client.interactions.create(model=MODEL, input="hello", previous_interaction_id=b.id)
