"""The upstream-stream translator of the ``openai`` backend, on recorded chunk sequences.

Each fixture in ``fixtures/openai/`` is one upstream answer written from the documented stream format of vLLM,
SGLang, Ollama, llama.cpp's server or llama-cpp-python's server, as the bytes on the wire, with the model events
it must become. Every fixture is decoded whole, line by line and byte by byte (chunk boundaries must not
matter), and what comes out must also pass the engine's step writer: one step open at a time, arguments that
parse.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openinteractions.backends.base import (
    BackendError,
    CallArguments,
    CallStart,
    Finish,
    ModelEvent,
    TextChunk,
    ThoughtChunk,
    UsageReport,
)
from openinteractions.backends.openai.errors import Redactor, stream_error
from openinteractions.backends.openai.sse import SSEDecoder
from openinteractions.backends.openai.translate import (
    StreamFailure,
    StreamTranslator,
    ThinkTags,
    TruncatedStream,
    coalesce,
    usage_report,
)
from openinteractions.engine.signatures import ThoughtSigner
from openinteractions.engine.steps import StepWriter

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def wire(fixture: dict[str, Any]) -> bytes:
    end = fixture.get("line_ending", "\n")
    parts = []
    for item in fixture["stream"]:
        text = "data: " + json.dumps(item) if isinstance(item, dict) else item.replace("\n", end)
        parts.append(text + end + end)
    return "".join(parts).encode()


def pieces(data: bytes, mode: str) -> list[bytes]:
    if mode in ("whole", "batched"):
        return [data]
    if mode == "lines":
        return data.splitlines(keepends=True)
    return [data[i : i + 1] for i in range(len(data))]


def translate(fixture: dict[str, Any], mode: str) -> tuple[list[ModelEvent], list[Any]]:
    """Events out, and how the stream ended: as the backend reads it, minus the network."""
    translator = StreamTranslator(fixture.get("think_tags", "parse"))
    decoder = SSEDecoder()
    events: list[ModelEvent] = []
    done = False
    try:
        for piece in [*pieces(wire(fixture), mode), None]:
            messages = decoder.feed(piece) if piece is not None else decoder.close()
            batch = []
            for event, data in messages:
                if data == b"[DONE]":
                    done = True
                    break
                batch.append((event, data))
            if mode == "batched":  # what the backend does with one read: every message in one call
                translator.messages(batch, events)
            else:
                for event, data in batch:
                    events += translator.message(event, data)
            if done:
                break
        events += translator.finish(done)
    except StreamFailure as failure:
        error = stream_error(failure.payload, "upstream", Redactor(None))
        return events, ["failure", error.message, error.code]
    except TruncatedStream:
        return events, ["truncated"]
    except BackendError as exc:
        return events, ["error", exc.code]
    return events, []


def merged(events: list[ModelEvent]) -> list[list[Any]]:
    """Adjacent text, thought and argument pieces joined: how they were split does not matter downstream."""
    out: list[list[Any]] = []
    for event in events:
        match event:
            case TextChunk(text=text):
                kind, value = "text", text
            case ThoughtChunk(text=text):
                kind, value = "thought", text
            case CallArguments(fragment=fragment):
                kind, value = "args", fragment
            case CallStart(name=name, id=call_id):
                out.append(["call", name, call_id])
                continue
            case UsageReport():
                out.append(["usage", asdict(event)])
                continue
            case Finish(reason=reason):
                out.append(["finish", reason])
                continue
            case _:
                raise AssertionError(event)
        if out and out[-1][0] == kind:
            out[-1][1] += value
        else:
            out.append([kind, value])
    return out


def expected(fixture: dict[str, Any]) -> list[list[Any]]:
    for item in fixture["expect"]:
        if item[0] == "usage":
            item[1].setdefault("tool_use_tokens", 0)
    return fixture["expect"]


def test_there_is_a_fixture_for_every_engine() -> None:
    sources = " ".join(load(name)["source"] for name in NAMES)
    for engine in ("vLLM", "SGLang", "Ollama", "llama.cpp llama-server", "llama-cpp-python"):
        assert engine in sources


@pytest.mark.parametrize("mode", ["whole", "batched", "lines", "bytes"])
@pytest.mark.parametrize("name", NAMES)
def test_fixture(name: str, mode: str) -> None:
    fixture = load(name)
    events, ending = translate(fixture, mode)
    assert merged(events) + ([ending] if ending else []) == expected(fixture)


@pytest.mark.parametrize("name", NAMES)
def test_what_comes_out_is_a_valid_step_sequence(name: str) -> None:
    """Strict with what we emit: the engine's step writer accepts every event the translator produced."""
    events, ending = translate(load(name), "bytes")
    emitted: list[Any] = []

    async def emit(event: Any) -> None:
        emitted.append(event)

    async def run() -> None:
        writer = StepWriter(emit, ThoughtSigner(b"k" * 32), summaries=True)
        for event in events:
            if not isinstance(event, UsageReport | Finish):
                await writer.feed(event)
        await writer.close(strict=not ending)

    asyncio.run(run())
    assert sum(type(e).__name__ == "StepStartEvent" for e in emitted) == sum(
        type(e).__name__ == "StepStopEvent" for e in emitted
    )


def test_think_tags_split_at_every_position() -> None:
    text = "<think>\nabc</think>\n\ndef<b>"
    for cut in range(len(text) + 1):
        translator = StreamTranslator("parse")
        events = translator.feed(_chunk(text[:cut])) + translator.feed(_chunk(text[cut:])) + translator.finish()
        assert merged(events) == [["thought", "abc"], ["text", "def<b>"], ["finish", "stop"]], cut


def test_a_tag_prefix_at_the_end_is_text() -> None:
    tags = ThinkTags()
    assert tags.feed("a <thi") == [(False, "a ")]
    assert tags.flush() == [(False, "<thi")]


def test_usage_counts_reasoning_apart_from_output() -> None:
    report = usage_report(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    )
    assert report == UsageReport(input_tokens=100, output_tokens=20, thought_tokens=30, cached_tokens=64)
    assert usage_report({"prompt_tokens": "x", "completion_tokens": None}) == UsageReport()


def test_usage_only_final_chunk_with_empty_choices() -> None:
    translator = StreamTranslator()
    assert translator.feed({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}) == []
    assert translator.finish() == [UsageReport(input_tokens=3, output_tokens=2), Finish("stop")]


def test_arguments_after_a_call_completed_are_refused() -> None:
    translator = StreamTranslator()
    translator.feed(_call(0, "a", "{}", call_id="c0"))
    translator.feed(_call(1, "b", "{}", call_id="c1"))  # closes call 0: its arguments are complete
    assert translator.feed(_call(0, None, "  ")) == []  # whitespace is harmless
    with pytest.raises(BackendError) as caught:
        translator.feed(_call(0, None, ',"x":1}'))
    assert caught.value.code == "invalid_function_call"


def test_a_call_that_never_got_a_name_is_an_error() -> None:
    translator = StreamTranslator()
    translator.feed(_call(0, None, "{}", call_id="c0"))
    with pytest.raises(BackendError, match="without a function name"):
        translator.finish()


def test_arguments_sent_as_an_object_are_serialised() -> None:
    translator = StreamTranslator()
    events = translator.feed(_call(0, "f", {"a": [1, "é"]}, call_id="c")) + translator.finish()
    assert merged(events) == [["call", "f", "c"], ["args", '{"a": [1, "é"]}'], ["finish", "stop"]]


def test_content_as_a_list_of_parts() -> None:
    translator = StreamTranslator()
    parts = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}, {"type": "text", "text": "Yes."}]
    events = translator.feed({"choices": [{"index": 0, "delta": {"content": parts}}]}) + translator.finish()
    assert merged(events) == [["thought", "hmm"], ["text", "Yes."], ["finish", "stop"]]


def test_abort_and_error_finish_reasons_fail_the_run() -> None:
    for reason in ("abort", "error"):
        translator = StreamTranslator()
        translator.feed({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": reason}]})
        with pytest.raises(BackendError) as caught:
            translator.finish()
        assert caught.value.code == "aborted"


def test_non_objects_and_missing_fields_are_ignored() -> None:
    translator = StreamTranslator()
    for junk in (None, [], "x", 3, {}, {"choices": None}, {"choices": [None, 1]}, {"choices": [{"delta": None}]}):
        assert translator.feed(junk) == []
    assert translator.feed({"choices": [{"delta": {"tool_calls": [None, "x"]}}]}) == []
    assert translator.finish() == [Finish("stop")]


def test_an_error_event_that_is_not_json_still_fails() -> None:
    with pytest.raises(StreamFailure) as caught:
        StreamTranslator().message("error", b"upstream exploded")
    assert caught.value.payload == {"message": "upstream exploded"}


def test_redaction_of_upstream_error_messages() -> None:
    redact = Redactor("sk-live-0123456789abcdef")
    payload = {"error": {"message": "bad key sk-live-0123456789abcdef (sk-live-0123...cdef)", "code": 401}}
    error = stream_error(payload, "upstream", redact)
    assert "0123456789abcdef" not in error.message and "sk-live-0123" not in error.message
    assert error.code == "permission_denied"


def _chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def _call(index: int, name: str | None, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:
        item["function"]["name"] = name
    if call_id is not None:
        item["id"] = call_id
    return {"choices": [{"index": 0, "delta": {"tool_calls": [item]}}]}


def test_coalesce_joins_adjacent_pieces_of_one_kind_and_keeps_the_order() -> None:
    events: list[ModelEvent] = [
        ThoughtChunk("a"), ThoughtChunk("b"), TextChunk("c"), TextChunk("d"), TextChunk("e"),
        CallStart("f", "id1"), CallArguments('{"x"'), CallArguments(": 1}"), CallStart("g"), CallArguments("{}"),
        TextChunk("h"), UsageReport(1, 2), Finish("stop"),
    ]  # fmt: skip
    assert coalesce(events) == [
        ThoughtChunk("ab"), TextChunk("cde"), CallStart("f", "id1"), CallArguments('{"x": 1}'), CallStart("g"),
        CallArguments("{}"), TextChunk("h"), UsageReport(1, 2), Finish("stop"),
    ]  # fmt: skip
    assert coalesce([TextChunk("x")]) == [TextChunk("x")]
    assert coalesce([]) == []
    assert coalesce([TextChunk("x"), TextChunk("y")]) == [TextChunk("xy")]


@pytest.mark.parametrize("odd", [b"not json", b"", b'{"choices":[{"index":0,"delta":{"content":"zz"}}]}'])
def test_messages_parsed_together_read_exactly_as_one_by_one(odd: bytes) -> None:
    good = b'{"choices":[{"index":0,"delta":{"content":"a"}}]}'
    # The third case is a data line holding two JSON values: one by one, only the first counts.
    batch = [("message", good), ("message", good + b"," + odd if odd.startswith(b"{") else odd), ("message", good)]
    alone: list[ModelEvent] = []
    one_by_one = StreamTranslator()
    for event, data in batch:
        alone += one_by_one.message(event, data)
    together: list[ModelEvent] = []
    StreamTranslator().messages(batch, together)
    assert together == alone
    assert together == [TextChunk("a")] * (3 if odd.startswith(b"{") else 2)


# ---- the fast paths read exactly as the general ones ----------------------------------------------------

_texts = st.sampled_from(["a", " b", "", "<think>", "x</think>", "<thi", "nk>y", "\n", "é"])
_deltas = st.one_of(
    st.fixed_dictionaries({"content": _texts}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": _texts}),
    st.fixed_dictionaries({"content": _texts, "reasoning_content": st.none(), "tool_calls": st.none()}),
    st.fixed_dictionaries({"reasoning_content": _texts}),
    st.fixed_dictionaries({"content": st.none(), "reasoning": _texts}),
    st.fixed_dictionaries(
        {"tool_calls": st.lists(st.fixed_dictionaries({
            "index": st.integers(0, 1),
            "function": st.fixed_dictionaries({"name": st.sampled_from(["f", ""]),
                                               "arguments": st.sampled_from(['{"a"', ": 1}", "", "{}"])}),
        }), max_size=2)}
    ),
)  # fmt: skip
_chunks = st.fixed_dictionaries(
    {"choices": st.lists(st.fixed_dictionaries({"index": st.sampled_from([0, 1, None]), "delta": _deltas,
                                                "finish_reason": st.sampled_from([None, None, "", "stop", "length"])}),
                         max_size=2)},
    optional={"usage": st.just({"prompt_tokens": 3, "completion_tokens": 4}), "object": st.just("chunk")},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_chunks, min_size=2, max_size=12), st.sampled_from(["parse", "starts_open", "off"]))
def test_chunks_read_together_give_what_one_by_one_gives(chunks: list[Any], think: str) -> None:
    """The batched path (one parse, runs of text-only chunks joined) against ``feed`` one chunk at a time."""
    alone, together = StreamTranslator(think), StreamTranslator(think)  # type: ignore[arg-type]
    expected_events: list[ModelEvent] = []
    got: list[ModelEvent] = []
    outcome = []
    for translator, out in ((alone, expected_events), (together, got)):
        try:
            if translator is alone:
                for chunk in chunks:
                    out += translator.feed(chunk)
            else:
                translator.messages([("message", json.dumps(c).encode()) for c in chunks], out)
            out += translator.finish()
            outcome.append("ok")
        except BackendError as exc:
            outcome.append(exc.code)
    assert outcome[0] == outcome[1]
    assert merged(got) == merged(expected_events)


_lines = st.sampled_from(["data: {}", "data: x", "data:y", "data", "event: error", ": ping", "id: 3", "error: {}", ""])


@settings(max_examples=300, deadline=None)
@given(st.lists(_lines, max_size=14), st.sampled_from(["\n", "\r\n"]), st.lists(st.integers(0, 200), max_size=5))
def test_sse_decoding_does_not_depend_on_where_reads_end(lines: list[str], end: str, cuts: list[int]) -> None:
    """Whole, in arbitrary pieces, and line by line through the general path: the same messages."""
    data = "".join(line + end for line in lines).encode()
    whole = SSEDecoder()
    expected_messages = whole.feed(data) + whole.close()
    pieces_decoder = SSEDecoder()
    got = []
    start = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        got += pieces_decoder.feed(data[start:cut])
        start = cut
    got += pieces_decoder.close()
    assert got == expected_messages
    reference: list[tuple[str, bytes]] = []
    event, buffer = "", []
    for line in [*lines, ""]:
        if not line:
            if buffer:
                reference.append((event or "message", b"\n".join(buffer)))
            event, buffer = "", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                buffer.append(value.encode())
            elif name == "event":
                event = value
            elif name == "error":  # llama.cpp server's error lines
                event = "error"
                buffer.append(value.encode())
    assert expected_messages == reference
