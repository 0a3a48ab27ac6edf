"""Unit tests of the embedded backend's pure parts: numeric-range grammars, the streamed-call reader, stop
sequences and <think> splitting."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openinteractions.backends.base import CallStart, TextChunk, ThoughtChunk
from openinteractions.backends.llamacpp.calls import CallReader
from openinteractions.backends.llamacpp.schema_grammar import (
    UnsupportedSchema,
    check_supported,
    integer_range,
    number_range,
    schema_to_gbnf,
)
from openinteractions.backends.llamacpp.text import StopScanner, ThinkSplitter


def as_regex(rule: str) -> re.Pattern[str]:
    """The GBNF subset these rules use (literals, classes, {n}, groups, |) read as a regular expression."""
    pattern = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), rule).replace(" ", "")
    return re.compile(f"(?:{pattern})$")


@given(lo=st.integers(-(10**6), 10**6), span=st.integers(0, 10**6), probe=st.integers(-2 * 10**6, 2 * 10**6))
def test_integer_ranges_are_exact(lo: int, span: int, probe: int) -> None:
    hi = lo + span
    rule = as_regex(integer_range(lo, hi))
    for value in (probe, lo, hi, lo - 1, hi + 1, 0):
        assert bool(rule.match(str(value))) == (lo <= value <= hi), (lo, hi, value)
    assert not rule.match("-0") and not rule.match("007")


@given(
    lo=st.integers(-1000, 1000),
    span=st.integers(0, 2000),
    value=st.decimals(-3000, 3000, places=3, allow_nan=False, allow_infinity=False),
)
def test_number_ranges_admit_only_numbers_inside(lo: int, span: int, value: object) -> None:
    hi = lo + span
    text = format(value, "f").rstrip("0").rstrip(".") if "." in format(value, "f") else format(value, "f")
    if as_regex(number_range(lo, hi)).match(text):
        assert lo <= float(text) <= hi


@pytest.mark.parametrize("keyword", ["multipleOf", "not", "uniqueItems", "minProperties", "if"])
def test_unenforceable_keywords_are_refused(keyword: str) -> None:
    with pytest.raises(UnsupportedSchema, match=keyword):
        check_supported({"type": "object", "properties": {"a": {"type": "integer", keyword: 2}}})


def test_call_reader_streams_exact_argument_text() -> None:
    text = (
        '[{"name": "get_weather", "arguments": {"city": "Pa\\"ris {x}", "n": [1, {"d": 2}]}}, '
        '{"name": "b", "arguments": {}}]'
    )
    for size in (1, 2, 3, 7, len(text)):
        reader, calls = CallReader(), []
        for i in range(0, len(text), size):
            for event in reader.feed(text[i : i + size]):
                if isinstance(event, CallStart):
                    calls.append([event.name, ""])
                else:
                    calls[-1][1] += event.fragment
        assert calls == [["get_weather", '{"city": "Pa\\"ris {x}", "n": [1, {"d": 2}]}'], ["b", "{}"]]
        assert json.loads(calls[0][1]) == {"city": 'Pa"ris {x}', "n": [1, {"d": 2}]}
        assert not reader.open


@given(text=st.text(max_size=60), stop=st.text(min_size=1, max_size=4), cuts=st.lists(st.integers(0, 60)))
def test_stop_scanner_matches_a_plain_search(text: str, stop: str, cuts: list[int]) -> None:
    scanner, out = StopScanner([stop]), ""
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    for a, b in itertools.pairwise(bounds):
        if scanner.stopped:
            break
        out += scanner.feed(text[a:b])
    if not scanner.stopped:
        out += scanner.flush()
    expected = text[: text.find(stop)] if stop in text else text
    assert out == expected


def test_think_splitter_across_tokens() -> None:
    splitter, events = ThinkSplitter(), []
    for piece in ["<th", "ink>plan", " more</thi", "nk>answer", " <"]:
        events += splitter.feed(piece)
    events += splitter.flush()
    thoughts = "".join(e.text for e in events if isinstance(e, ThoughtChunk))
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert thoughts == "plan more" and text == "answer <"


def test_a_prompt_takes_its_own_conversations_slot_and_spares_the_others() -> None:
    from openinteractions.backends.llamacpp.engine import _preference, _Slot

    header = list(range(30))  # a template header and default system prompt every conversation shares
    other = _Slot(0, header + [900 + i for i in range(300)], used=1.0)
    mine = _Slot(1, header + [500 + i for i in range(200)], used=2.0)
    empty = _Slot(2)
    continuing = header + [500 + i for i in range(200)] + [7, 8, 9]
    assert max([other, mine, empty], key=lambda s: _preference(s, continuing)) is mine
    fresh = [*header, 1, 2, 3]
    assert max([other, mine, empty], key=lambda s: _preference(s, fresh)) is empty
    assert max([other, mine], key=lambda s: _preference(s, fresh)) is other  # the one used longest ago


@pytest.fixture(scope="module")
def vocab() -> object:
    """The default GGUF's vocabulary only (no weights), for llama.cpp's own grammar parser."""
    import llama_cpp as L

    from openinteractions.backends.llamacpp.models import default_model_path

    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(default_model_path()).encode(), params)
    assert model
    yield L.llama_model_get_vocab(model)
    L.llama_model_free(model)


@pytest.mark.parametrize(
    "bounds",
    [{"maxLength": 4000}, {"maxLength": 100_000}, {"minLength": 300}, {"minLength": 2000, "maxLength": 2001}],
)
def test_long_string_bounds_are_grammars_llama_cpp_accepts(vocab: object, bounds: dict[str, int]) -> None:
    """A length bound spelled as nested optional groups stops parsing in llama.cpp past about a thousand: the
    4000-character code argument of code_execution failed every run with it."""
    import llama_cpp as L

    from openinteractions.backends.llamacpp.calls import answer_or_calls_grammar, calls_grammar
    from openinteractions.schema.tools import FunctionTool

    tool = FunctionTool(
        type="function",
        name="code_execution",
        parameters={"type": "object", "properties": {"code": {"type": "string", **bounds}}, "required": ["code"]},
    )
    grammar = answer_or_calls_grammar(calls_grammar([tool]))
    low = bounds.get("minLength", 0)
    high = bounds.get("maxLength", max(low, 256))  # an open string gets a ceiling, never below its minimum
    assert f"char{{{low},{high}}}" in grammar
    sampler = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler
    L.llama_sampler_free(sampler)


def test_a_minimum_length_llama_cpp_cannot_repeat_is_refused() -> None:
    with pytest.raises(UnsupportedSchema, match="minLength"):
        schema_to_gbnf({"type": "object", "properties": {"s": {"type": "string", "minLength": 2001}}})


def _file_type(path: object) -> str | None:
    import ctypes

    import llama_cpp as L

    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(path).encode(), params)
    assert model, f"llama.cpp could not load {path}"
    try:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        return buf.value.decode() if n >= 0 else None
    finally:
        L.llama_model_free(model)


def test_converted_weights_are_made_once_then_found_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp as L

    from openinteractions.backends.llamacpp import models

    source = models.default_model_path()
    assert _file_type(source) == "3"  # Q4_1, as shipped
    path = models.converted(source, "q4_0", tmp_path)
    assert path.parent == tmp_path and _file_type(path) == "2"  # LLAMA_FTYPE_MOSTLY_Q4_0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    def no_second_conversion(*_args: object) -> int:
        raise AssertionError("converted again although the cache holds it")

    monkeypatch.setattr(L, "llama_model_quantize", no_second_conversion)
    assert models.converted(source, "q4_0", tmp_path) == path


def test_a_failed_conversion_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    from openinteractions.backends.llamacpp import models

    source = tmp_path / "broken.gguf"
    source.write_bytes(b"GGUF" + b"\0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="could not convert"):
        models.converted(source, "q4_k_m", cache)
    assert not any(cache.iterdir())


@given(pending=st.integers(1, 3000), share=st.integers(1, 600))
def test_a_prompt_is_cut_into_chunks_whose_last_has_at_least_two_tokens(pending: int, share: int) -> None:
    from openinteractions.backends.llamacpp.engine import MIN_LAST_CHUNK, _chunk_size

    chunks = []
    while pending:
        size = _chunk_size(pending, share)
        assert size > 0 or share < MIN_LAST_CHUNK  # a share of 1 may have to wait for a larger one
        if size == 0:
            share += 1
            continue
        chunks.append(size)
        pending -= size
    assert all(0 < c <= max(share, 1) for c in chunks)
    assert chunks[-1] >= MIN_LAST_CHUNK or len(chunks) == 1


def test_history_steps_the_prompt_cannot_carry_are_refused_not_dropped() -> None:
    from openinteractions.backends.base import BackendError
    from openinteractions.backends.llamacpp.prompt import chat_messages
    from openinteractions.schema.steps import GoogleMapsResultStep, ThoughtStep, UserInputStep

    question = UserInputStep.model_validate({"content": [{"type": "text", "text": "Where?"}]})
    thought = ThoughtStep.model_validate({"signature": "s", "summary": [{"type": "text", "text": "hmm"}]})
    assert chat_messages([question, thought], []) == [{"role": "user", "content": "Where?"}]  # by design
    maps = GoogleMapsResultStep.model_validate({"call_id": "c1", "result": [{"name": "Rome"}]})
    with pytest.raises(BackendError, match=r"history step 1 \(google_maps_result\) cannot be sent to this model"):
        chat_messages([question, maps], [])
