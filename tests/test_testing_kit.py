"""The test kit's worked example (docs/testing.md): an app written against the unmodified SDK, tested offline
with the ``interactions`` fixture, which the package's pytest plugin (``openinteractions.testing``, registered
as a ``pytest11`` entry point) provides."""

from __future__ import annotations

from typing import Any

import pytest
from google import genai

from openinteractions.testing import InteractionsServer, call, fail, reply

MODEL = "gemini-3-flash-preview"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


# ---- the app under test: what a user writes, with a plain genai.Client() ---------------------------------------


def weather_answer(question: str, lookup: Any) -> str:
    """Asks the model; runs the function it calls with ``lookup``; returns the model's final text."""
    client = genai.Client()
    interaction = client.interactions.create(model=MODEL, input=question, tools=[WEATHER])
    while interaction.status == "requires_action":
        results = [
            {"type": "function_result", "call_id": step.id, "name": step.name, "result": lookup(**step.arguments)}
            for step in interaction.steps
            if step.type == "function_call"
        ]
        interaction = client.interactions.create(
            model=MODEL, input=results, tools=[WEATHER], previous_interaction_id=interaction.id
        )
    if interaction.status != "completed":
        raise RuntimeError(f"the model did not answer: {interaction.status}")
    return str(interaction.steps[-1].content[0].text)


def streamed_answer(question: str) -> str:
    client = genai.Client()
    stream = client.interactions.create(model=MODEL, input=question, stream=True)
    return "".join(e.delta.text for e in stream if e.event_type == "step.delta" and e.delta.type == "text")


# ---- its tests -----------------------------------------------------------------------------------------------


def test_the_app_runs_the_function_the_model_calls(interactions: InteractionsServer) -> None:
    interactions.script(
        MODEL,
        reply("It is sunny in Paris, 22 degrees.", last_step="function_result"),
        call("get_weather", {"city": "Paris"}, input_contains="weather"),
    )
    looked_up: list[str] = []

    def lookup(city: str) -> str:
        looked_up.append(city)
        return "sunny, 22 C"

    assert weather_answer("What is the weather in Paris?", lookup) == "It is sunny in Paris, 22 degrees."
    assert looked_up == ["Paris"]


def test_the_app_streams_the_answer(interactions: InteractionsServer) -> None:
    interactions.script(MODEL, reply("Bonjour ", thought="Greeting in French."), reply("never played"))
    assert streamed_answer("Say hello in French.") == "Bonjour "


def test_a_failing_model_reaches_the_app_as_a_failed_interaction(interactions: InteractionsServer) -> None:
    interactions.script(MODEL, fail("the model is overloaded", code="unavailable"))
    with pytest.raises(RuntimeError, match="the model did not answer: failed"):
        weather_answer("What is the weather in Rome?", lambda city: "")


def test_scripts_are_replaced_and_unknown_models_refused(interactions: InteractionsServer) -> None:
    interactions.script(MODEL, reply("first"))
    assert streamed_answer("?") == "first"
    interactions.script(MODEL, reply("second"))
    assert streamed_answer("?") == "second"
    with pytest.raises(ValueError, match="not one of this server's models"):
        interactions.script("no-such-model", reply("x"))


def test_the_server_runs_as_a_context_manager_without_pytest(tmp_path: Any) -> None:
    with InteractionsServer(tmp_path) as server:
        server.script(MODEL, reply("hi"))
        client = server.client()
        created = client.interactions.create(model=MODEL, input="hello")
        assert created.status == "completed" and created.steps[-1].content[0].text == "hi"
        assert client.interactions.get(created.id).steps[-1].content[0].text == "hi"  # stored, as by any server
