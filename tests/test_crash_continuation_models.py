"""Crash continuation with real model backends, through google-genai: a background run's server is killed
(SIGKILL) in the middle of the answer and restarted; the run goes on from its durable log, the model given the
answer so far as the start of its own (llama.cpp: the prompt ends inside the assistant's turn; an
OpenAI-compatible upstream: a last assistant message in the configured shape). The client that resumes with
the last event id it saw gets one stream: the cut step goes on under its index, no text twice, no restart
marker, and its text is the stored interaction's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai._interactions import APIConnectionError

from live import LiveServer, free_port
from resuming import dump, model_text, streamed_text
from test_openai_backend import fake, openai_model, url

EMBEDDED = "gemini-3-flash-preview"  # an alias of the embedded default
STORY = "Once upon a time there was a server that crashed and went on."
CUT = "Once upon a time there was a server"  # what the fake upstream tells before it hangs


def _cut(
    server: LiveServer, model: str, body: dict[str, Any], crash: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """A background stream created, read until ``crash`` says so, then the server killed; the events that
    reached the client, those sent before the kill included."""
    client = genai.Client(api_key="k", http_options={"base_url": server.url})
    head: list[dict[str, Any]] = []
    try:
        for event in client.interactions.create(model=model, background=True, stream=True, **body):
            head.append(dump(event))
            if server.process is not None and server.process.poll() is None and crash(head):
                server.kill()
    except (httpx.HTTPError, APIConnectionError):
        pass
    assert server.process is not None and server.process.poll() is not None, "the run ended before the crash"
    return head


def _resume(server: LiveServer, head: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Restart the server; the rest of the stream from the last event seen, and the stored interaction."""
    server.start()
    client = genai.Client(api_key="k", http_options={"base_url": server.url})
    interaction_id = head[0]["interaction"]["id"]
    tail = [dump(e) for e in client.interactions.get(interaction_id, stream=True, last_event_id=head[-1]["event_id"])]
    with server.http() as http:
        stored = http.get(f"/v1beta/interactions/{interaction_id}").json()
    return tail, stored


def _seamless(joined: list[dict[str, Any]], stored: dict[str, Any], status: str = "completed") -> None:
    assert [e["event_id"] for e in joined] == [str(n) for n in range(1, len(joined) + 1)]  # no gap, no repeat
    kinds = [e["event_type"] for e in joined]
    assert kinds.count("interaction.status_update") == 1  # in_progress once: no restart marker
    assert [e["step"]["type"] for e in joined if e["event_type"] == "step.start"] == ["model_output"]
    assert kinds[-1] == "interaction.completed" and joined[-1]["interaction"]["status"] == stored["status"] == status
    assert streamed_text(joined) == model_text(stored["steps"])


def _text_so_far(events: list[dict[str, Any]]) -> str:
    return "".join(streamed_text(events))


def test_an_embedded_model_answer_cut_by_a_crash_goes_on_where_it_stopped(tmp_path: Path) -> None:
    """Greedy decoding: the continued answer is the one an uninterrupted run gives."""
    body = {"input": "Explain how a bicycle works.", "generation_config": {"temperature": 0, "max_output_tokens": 64}}
    server = LiveServer(tmp_path, {}).start()  # no [models]: the embedded default
    try:
        head = _cut(server, EMBEDDED, body, lambda events: events[-1]["event_type"] == "step.delta")
        tail, stored = _resume(server, head)
        with server.http() as http:
            uninterrupted = http.post("/v1beta/interactions", json={"model": EMBEDDED, **body}).json()
    finally:
        server.stop()
    assert tail, "the resumed stream was empty"
    assert "interaction.completed" not in [e["event_type"] for e in head]
    _seamless(head + tail, stored, uninterrupted["status"])
    assert model_text(stored["steps"]) == model_text(uninterrupted["steps"])


def _story_cut_and_resumed(
    tmp_path: Path, log: Path, shape: str, **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The fake upstream's story through the server, killed once the answer reads CUT, then resumed: the events
    before and after the kill, and the stored interaction."""
    port = free_port()
    upstream = fake(port, log)
    model = openai_model([url(port)], model=f"story:{shape}", health_check_interval=0, **options)
    server = LiveServer(tmp_path, {"models.m": model}).start()
    try:
        head = _cut(server, "m", {"input": "Tell me a story."}, lambda events: _text_so_far(events) == CUT)
        tail, stored = _resume(server, head)
    finally:
        server.stop()
        upstream.kill()
    return head, tail, stored


@pytest.mark.parametrize("shape", ["continue_final_message", "prefix"])
def test_an_upstream_answer_cut_by_a_crash_is_continued_from_an_assistant_prefill(tmp_path: Path, shape: str) -> None:
    """The fake upstream tells a story's first three pieces and hangs; after the restart it is sent the story so
    far as the last assistant message and, only if that is in the configured shape, tells the rest."""
    log = tmp_path / "upstream.jsonl"
    head, tail, stored = _story_cut_and_resumed(tmp_path, log, shape, continuation=shape)
    _seamless(head + tail, stored)
    assert model_text(stored["steps"]) == [STORY]
    last = json.loads(log.read_text().splitlines()[-1])["body"]
    prefill = {"role": "assistant", "content": CUT}
    assert last["messages"][-1] == (prefill | {"prefix": True} if shape == "prefix" else prefill)
    flags = (last.get("continue_final_message"), last.get("add_generation_prompt"))
    assert flags == ((True, False) if shape == "continue_final_message" else (None, None))


def test_an_upstream_without_continuation_restarts_the_cut_step_under_a_marker(tmp_path: Path) -> None:
    """The default (continuation "none"): the cut step is closed as it was, an interaction.status_update marks
    the restart, and the round's new answer is a new step."""
    head, tail, stored = _story_cut_and_resumed(tmp_path, tmp_path / "upstream.jsonl", "none")
    joined = head + tail
    assert [e["event_id"] for e in joined] == [str(n) for n in range(1, len(joined) + 1)]
    assert [e["event_type"] for e in joined].count("interaction.status_update") == 2
    assert model_text(stored["steps"]) == streamed_text(joined) == [CUT, STORY]
