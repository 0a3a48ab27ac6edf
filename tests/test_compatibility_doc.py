"""docs/compatibility.md names every request field, generation setting, tool, step and delta type of the wire
schema, so that what the SDKs can send has a documented answer here; and the refusals it lists are refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from live import LiveServer
from openinteractions.schema import deltas, steps, tools
from openinteractions.schema.generation import GenerationConfig
from openinteractions.schema.requests import CreateInteractionRequest

DOC = (Path(__file__).resolve().parents[1] / "docs" / "compatibility.md").read_text()
ROWS = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.MULTILINE))


def _types(union: Any) -> set[str]:
    found: set[str] = set()
    for member in get_args(union):
        found |= _types(member)
        field = getattr(member, "model_fields", {}).get("type")
        if field is not None:
            found.add(field.default)
    return found


@pytest.mark.parametrize("names", [
    set(CreateInteractionRequest.model_fields), set(GenerationConfig.model_fields),
    _types(tools.Tool), _types(steps.Step), _types(deltas.Delta),
], ids=["request fields", "generation_config", "tools", "steps", "deltas"])  # fmt: skip
def test_every_name_of_the_schema_has_a_row(names: set[str]) -> None:
    assert names and names <= ROWS, sorted(names - ROWS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("compat"), {
        "models.m": {"backend": "scripted", "inline": True}, "tools.code_execution": {"enabled": False},
    })  # fmt: skip
    yield live.start()
    live.stop()


@pytest.mark.parametrize("fields, named", [
    ({"cached_content": "cachedContents/x"}, "'cached_content'"),
    ({"continuation_token": "t"}, "'continuation_token'"),
    ({"environment": {"type": "x"}}, "'environment'"),
    ({"service_tier": "priority"}, "'service_tier'"),
    ({"tools": [{"type": "google_maps"}]}, "'google_maps' tool"),
    ({"tools": [{"type": "computer_use"}]}, "'computer_use' tool"),
    ({"tools": [{"type": "google_search", "search_types": ["enterprise_web_search"]}]}, "enterprise_web_search"),
    ({"generation_config": {"video_config": {"task": "text_to_video"}}}, "video_config"),
    ({"response_modalities": ["video"]}, "'response_modalities' 'video'"),
], ids=lambda value: str(value)[:40])  # fmt: skip
def test_what_the_matrix_calls_refused_is_a_400_that_names_it(server: LiveServer, fields: dict[str, Any],
                                                               named: str) -> None:  # fmt: skip
    answer = httpx.post(f"{server.url}/v1beta/interactions", json={"model": "m", "input": "hi", **fields})
    assert answer.status_code == 400 and named in answer.json()["error"]["message"], answer.text
