"""Property: for random JSON-schema tool definitions, every call the embedded model emits validates against
its schema, and its streamed fragments concatenate to exactly its arguments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from google import genai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live import LiveServer
from protocol import check_stream

names = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True)
leaf = st.one_of(
    st.just({"type": "string"}),
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(1, 30)),
    st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), min_size=1, max_size=4, unique=True).map(
        lambda values: {"type": "string", "enum": values}
    ),
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-50, 50),
        st.integers(0, 100),
    ),
    st.just({"type": "number"}),
    st.just({"type": "boolean"}),
)
values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda item, n: {"type": "array", "items": item, "maxItems": n}, inner, st.integers(1, 3)),
        st.dictionaries(names, inner, min_size=1, max_size=3).map(
            lambda props: {"type": "object", "properties": props, "required": sorted(props)[:1]}
        ),
    ),
    max_leaves=5,
)
parameters = st.builds(
    lambda props, required_count: {
        "type": "object",
        "properties": props,
        "required": sorted(props)[:required_count],
    },
    st.dictionaries(names, values, min_size=0, max_size=4),
    st.integers(0, 4),
)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("embedded-calls"), {}).start()
    yield server
    server.stop()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schemas=st.lists(parameters, min_size=1, max_size=2), seed=st.integers(0, 2**31))
def test_every_call_validates(embedded: LiveServer, schemas: list[dict[str, Any]], seed: int) -> None:
    client = genai.Client(api_key="k", http_options={"base_url": embedded.url})
    tools = [
        {"type": "function", "name": f"tool_{i}", "description": "Do the thing.", "parameters": schema}
        for i, schema in enumerate(schemas)
    ]
    events = client.interactions.create(
        model="gemini-3-flash-preview",
        input="Call a tool.",
        tools=tools,
        stream=True,
        generation_config={"tool_choice": "any", "seed": seed, "max_output_tokens": 400},
    )
    stream = [e.model_dump(mode="json", exclude_none=True, by_alias=True) for e in events]
    result = check_stream(stream)
    if result["status"] == "failed":
        # A 135M model can loop inside an unbounded string until max_output_tokens cuts it off: then there is
        # no call to validate, and the run must say why instead of emitting a broken one.
        assert stream[-1]["error"]["code"] == "resource_exhausted", stream[-1]
        assert "inside a function call" in stream[-1]["error"]["message"]
        return
    calls = [s for s in result["steps"] if s["type"] == "function_call"]
    assert calls and result["status"] == "requires_action"
    by_name = {t["name"]: t["parameters"] for t in tools}
    for call in calls:
        jsonschema.validate(call["arguments"], by_name[call["name"]])
