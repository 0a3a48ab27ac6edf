"""The embedded backend continues a round cut off by a crash: given what the round had streamed, it streams only
the rest, and with greedy decoding (or a seed) the rest is exactly what the uninterrupted round went on with.

The model is the embedded default (SmolLM2-135M-Instruct), loaded in this process. Each case generates a round
uninterrupted, cuts it after some of its chunks, continues it from there with ``GenerationRequest.resume``, and
compares.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from openinteractions.backends.base import (
    BackendError,
    CallArguments,
    CallStart,
    GenerationRequest,
    ModelEvent,
    Resume,
    TextChunk,
    ThoughtChunk,
)
from openinteractions.backends.llamacpp.backend import LlamaCppBackend, LlamaCppOptions
from openinteractions.schema.generation import GenerationConfig, TextResponseFormat
from openinteractions.schema.steps import FunctionCallStep, ModelOutputStep, ThoughtStep, UserInputStep
from openinteractions.schema.tools import FunctionTool

GREEDY = {"temperature": 0, "max_output_tokens": 40}
WEATHER = FunctionTool(
    type="function",
    name="get_weather",
    description="Get the current weather in a given location",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(LlamaCppOptions(parallel=1, context_size=1024))
    yield backend
    asyncio.run(backend.aclose())


def request(prompt: str, resume: Resume | None = None, **options: Any) -> GenerationRequest:
    config = {**GREEDY, **options.pop("config", {})}
    user = UserInputStep.model_validate({"type": "user_input", "content": [{"type": "text", "text": prompt}]})
    return GenerationRequest(model="m", history=[user], config=GenerationConfig(**config), resume=resume, **options)


def events(backend: LlamaCppBackend, req: GenerationRequest) -> list[ModelEvent]:
    async def collect() -> list[ModelEvent]:
        backend.prepare(req)
        return [
            e
            async for e in backend.generate(req)
            if isinstance(e, TextChunk | ThoughtChunk | CallStart | CallArguments)
        ]

    return asyncio.run(collect())


def texts(items: list[ModelEvent], kind: type[TextChunk] | type[ThoughtChunk] = TextChunk) -> list[str]:
    return [e.text for e in items if isinstance(e, kind)]


def text_step(text: str) -> ModelOutputStep:
    return ModelOutputStep.model_validate({"type": "model_output", "content": [{"type": "text", "text": text}]})


@pytest.mark.parametrize("config", [{}, {"temperature": 1.0, "seed": 11}], ids=["greedy", "seeded"])
def test_a_cut_answer_goes_on_exactly_as_it_would_have(backend: LlamaCppBackend, config: dict[str, Any]) -> None:
    prompt = "Explain how a bicycle works."
    whole = texts(events(backend, request(prompt, config=config)))
    assert len(whole) > 20
    for cut in (1, 9, len(whole) - 3):
        so_far = "".join(whole[:cut])
        rest = texts(events(backend, request(prompt, Resume([], "model_output", so_far), config=config)))
        assert so_far + "".join(rest) == "".join(whole), cut


def test_a_cut_between_tokens_that_read_back_as_one_goes_on_exactly(backend: LlamaCppBackend) -> None:
    """The model wrote a blank line as two newline tokens; the text so far, ending with them, would tokenize into
    one. Replayed, the model writes the same two tokens again, and goes on the same."""
    prompt = "Write a short poem about the sea."
    whole = texts(events(backend, request(prompt, config={"max_output_tokens": 60})))
    cuts = [k for k in range(2, len(whole)) if whole[k - 2].endswith("\n") and whole[k - 1] == "\n"]
    assert cuts, whole
    so_far = "".join(whole[: cuts[0]])
    rest = texts(events(backend, request(prompt, Resume([], "model_output", so_far), config={"max_output_tokens": 60})))
    assert so_far + "".join(rest) == "".join(whole)


def test_a_cut_answer_whose_budget_is_spent_ends_at_once(backend: LlamaCppBackend) -> None:
    """Its tokens count against max_output_tokens as when they were generated."""
    prompt = "Explain how a bicycle works."
    whole = "".join(texts(events(backend, request(prompt))))
    assert events(backend, request(prompt, Resume([], "model_output", whole))) == []


def test_a_cut_thought_goes_on_then_the_answer_follows(backend: LlamaCppBackend) -> None:
    """Prompted reasoning (a pass of its own): a cut thought is continued from its summary, and the answer is the
    uninterrupted one."""
    prompt, config = "Is 17 a prime number?", {"thinking_level": "low", "max_output_tokens": 24}
    whole = events(backend, request(prompt, config=config))
    thought, answer = texts(whole, ThoughtChunk), texts(whole, TextChunk)
    assert len(thought) > 10 and answer
    so_far = "".join(thought[:7])
    rest = events(backend, request(prompt, Resume([], "thought", so_far), config=config))
    assert so_far + "".join(texts(rest, ThoughtChunk)) == "".join(thought)
    assert "".join(texts(rest, TextChunk)) == "".join(answer)


def test_an_answer_cut_after_its_thought_reads_the_thought_from_its_signature(backend: LlamaCppBackend) -> None:
    prompt, config = "Is 17 a prime number?", {"thinking_level": "low", "max_output_tokens": 24}
    whole = events(backend, request(prompt, config=config))
    thought, answer = "".join(texts(whole, ThoughtChunk)), texts(whole, TextChunk)
    step = ThoughtStep(type="thought", signature="sealed")
    opened = {"sealed": thought}
    resume = Resume([step], "model_output", "".join(answer[:3]))
    rest = events(backend, request(prompt, resume, config=config, thought_text=lambda s: opened[s.signature or ""]))
    assert texts(rest, ThoughtChunk) == []  # the reasoning pass is over: it is not run again
    assert "".join(answer[:3]) + "".join(texts(rest)) == "".join(answer)


TRIP = TextResponseFormat(
    type="text",
    mime_type="application/json",
    schema={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
)


@pytest.mark.parametrize("config", [{}, {"temperature": 1.0, "seed": 5}], ids=["greedy", "seeded"])
def test_cut_json_output_goes_on_under_its_grammar(backend: LlamaCppBackend, config: dict[str, Any]) -> None:
    prompt = "Plan a trip: give a city and a number of days."
    whole = texts(events(backend, request(prompt, response_format=TRIP, config=config)))
    json.loads("".join(whole))
    for cut in (2, len(whole) // 2):
        so_far = "".join(whole[:cut])
        resume = Resume([], "model_output", so_far)
        rest = texts(events(backend, request(prompt, resume, response_format=TRIP, config=config)))
        assert so_far + "".join(rest) == "".join(whole), cut


def test_a_text_the_grammar_does_not_admit_fails_the_round_not_the_process(backend: LlamaCppBackend) -> None:
    resume = Resume([], "model_output", '{"town": ')
    with pytest.raises(BackendError, match="does not fit its grammar"):
        events(backend, request("Plan a trip.", resume, response_format=TRIP))


def test_calls_cut_after_a_call_go_on_with_the_rest_of_the_array(backend: LlamaCppBackend) -> None:
    """A round of calls cut after its first call: the array is reopened behind that call (the grammar advanced
    over it) and only what came after it comes out (here: the array's end, or more calls)."""
    prompt = "What is the weather in Paris, in Rome and in Berlin?"
    options: dict[str, Any] = {"functions": [WEATHER], "config": {"tool_choice": "any"}}
    whole = events(backend, request(prompt, **options))
    assert isinstance(whole[0], CallStart)
    end = next((i for i, e in enumerate(whole) if i and isinstance(e, CallStart)), len(whole))
    first = json.loads("".join(e.fragment for e in whole[:end] if isinstance(e, CallArguments)))
    call = FunctionCallStep(type="function_call", id="c1", name="get_weather", arguments=first)
    rest = events(backend, request(prompt, Resume([call], None, ""), **options))
    assert rest == whole[end:]


def test_prose_cut_where_calls_were_allowed_goes_on_as_prose(backend: LlamaCppBackend) -> None:
    """tool_choice auto: the model answered in prose, so the grammar was dropped; the continuation has none."""
    prompt = "Write one sentence about the sea."
    options: dict[str, Any] = {"functions": [WEATHER]}
    whole = texts(events(backend, request(prompt, **options)))
    assert whole and not "".join(whole).lstrip().startswith("[")
    so_far = "".join(whole[:5])
    rest = texts(events(backend, request(prompt, Resume([], "model_output", so_far), **options)))
    assert so_far + "".join(rest) == "".join(whole)


def test_a_round_with_nothing_written_is_generated_whole(backend: LlamaCppBackend) -> None:
    prompt = "Explain how a bicycle works."
    assert events(backend, request(prompt, Resume([], None, ""))) == events(backend, request(prompt))


def test_the_so_far_text_of_native_think_tags_is_rebuilt_around_the_thought() -> None:
    from openinteractions.backends.llamacpp.continued import so_far

    thought = ThoughtStep(type="thought", signature="s")
    resume = Resume([thought], "model_output", "\n\nYes.")
    assert so_far(resume, lambda s: "hmm", prompted=False).answer == "<think>hmm</think>\n\nYes."  # type: ignore[union-attr]
    assert so_far(Resume([], "thought", "so"), lambda s: "", prompted=False).answer == "<think>so"  # type: ignore[union-attr]
    prompted = so_far(resume, lambda s: "hmm", prompted=True)
    assert prompted is not None and (prompted.reasoning, prompted.answer) == ("hmm", "\n\nYes.")
    cut = so_far(Resume([text_step("a")], None, ""), lambda s: "", prompted=False)
    assert cut is not None and cut.answer == "a"


def test_an_answer_primed_inside_a_think_block_goes_on_as_thought() -> None:
    from openinteractions.backends.llamacpp.backend import Plan, _Answer
    from openinteractions.backends.llamacpp.engine import Sampling

    plan = Plan("", [], "text", None, Sampling(), 10, 0, [])
    answer = _Answer(plan, native_thinking=True)
    answer.prime("<think>so")
    assert answer.feed(" far</think>\n\nYes.") == [ThoughtChunk(" far"), TextChunk("\n\nYes.")]
