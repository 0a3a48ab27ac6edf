"""Property: for random scripted runs, the Interaction assembled from the streamed events equals GET's and
non-stream create's."""

from __future__ import annotations

import json
from typing import Any

from google import genai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from openinteractions.engine.assembler import Assembler
from openinteractions.schema.events import Event

MODEL = "gemini-3-flash-preview"
_event = TypeAdapter(Event)

texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
call_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=8)
calls = st.builds(
    lambda name, args, chunks, cid: {"call": {"name": name, "arguments": args, "chunks": chunks, "id": cid}},
    st.sampled_from(["alpha", "beta"]),
    st.dictionaries(st.text("abcxyz", min_size=1, max_size=5), json_values, max_size=4),
    st.integers(1, 6),
    call_ids,
)
searches = st.builds(
    lambda cid, queries: {"call": {"name": "google_search", "arguments": {"queries": queries}, "id": cid}},
    call_ids,
    st.lists(st.sampled_from(["mountain", "Paris climate", "python list", "nothing here"]), min_size=1, max_size=2),
)
single = st.one_of(
    st.builds(lambda t: [{"text": t}], texts),
    st.builds(lambda t: [{"thought": t}], texts),
    st.just([{"break": True}]),
    st.builds(lambda c: [c], calls),
)
endings = st.sampled_from([[], [], [{"error": {"code": "unavailable", "message": "boom"}}], [{"finish": "max_tokens"}]])
round_events = st.lists(single, max_size=5).map(lambda parts: [e for part in parts for e in part])


def _script(rounds: list[list[dict[str, Any]]], searches: list[dict[str, Any]], end: list[dict[str, Any]]) -> Any:
    """Every round but the last ends with a google_search call, which the server runs (on the test corpus)
    before the next round."""
    *earlier, last = rounds
    return {"rounds": [[*events, search] for events, search in zip(earlier, searches, strict=False)] + [last + end]}


scripts = st.builds(
    _script, st.lists(round_events, min_size=1, max_size=3), st.lists(searches, min_size=2, max_size=2), endings
)
summaries = st.sampled_from(["auto", "none"])

TOOLS = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("alpha", "beta")]
TOOLS.append({"type": "google_search"})


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


def fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = Assembler()
    for event in events:
        assembler.apply(_event.validate_python(event))
    return {**assembler.summary, "steps": assembler.steps(), "errors": assembler.errors or None}


def comparable(interaction: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "status", "model", "object", "created", "updated", "service_tier", "usage", "steps", "errors")
    return {k: interaction.get(k) or None for k in keys}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=scripts, thinking=summaries)
def test_stream_get_and_non_stream_agree(client: genai.Client, script: dict[str, Any], thinking: str) -> None:
    body = {
        "model": MODEL,
        "input": json.dumps(script),
        "tools": TOOLS,
        "generation_config": {"thinking_summaries": thinking},
    }
    streamed = [dump(e) for e in client.interactions.create(**body, stream=True)]
    from_stream = comparable(fold(streamed))
    got = comparable(dump(client.interactions.get(from_stream["id"])))
    if from_stream["status"] == "failed":
        from_stream["updated"] = got["updated"] = None  # a failed stream has no completion event
    assert from_stream == got

    again = dump(client.interactions.create(**body))
    again.pop("continuation_ids", None)
    (again.get("usage") or {}).pop("initial_input_tokens", None)
    again = comparable(again)
    for key in ("id", "created", "updated"):
        again.pop(key), got.pop(key)
    assert again == got
