"""Runs survive a crash: the server is killed (SIGKILL) in the middle of background runs and restarted, and
every run goes on from its durable log to the end it would have had without the crash. Clients that resume
with the last event id they saw get one gap-free, duplicate-free stream."""

from __future__ import annotations

import asyncio
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import pg
from live import LiveServer
from openinteractions.backends import scripted
from openinteractions.backends.base import GenerationRequest, Resume, TextChunk
from openinteractions.schema.content import TextContent
from openinteractions.schema.steps import UserInputStep
from resuming import CrashingServer, ResumingReader, check_ids, model_text, streamed_text, wait_for

RUNS = 4


def _script(n: int) -> str:
    words = [{"text": f"w{n}.{i} "} for i in range(12)]
    paced = [e for w in words for e in (w, {"sleep_ms": 150})]
    return json.dumps({"script": [{"thought": "plan"}, *paced[:12], {"break": True}, *paced[12:]]})


@pytest.mark.parametrize(("seed", "database"), [(1, "sqlite"), (2, "sqlite"), (3, "postgresql")])
def test_background_runs_killed_at_a_random_moment_continue_after_the_restart(
    tmp_path: Path, seed: int, database: str
) -> None:
    if database == "postgresql":
        with pg.scratch_database() as name:
            _crash_and_continue(tmp_path, random.Random(seed), {"store": {"url": pg.url(name)}})
    else:
        _crash_and_continue(tmp_path, random.Random(seed), {})


def _create(server: CrashingServer, body: dict[str, Any]) -> dict[str, Any]:
    with server.server.http() as http:
        return http.post("/v1beta/interactions", json=body).json()  # type: ignore[no-any-return]


def _crash_and_continue(tmp_path: Path, rng: random.Random, sections: dict[str, Any]) -> None:
    server = CrashingServer(LiveServer(tmp_path, {"models.m": {"backend": "scripted", "inline": True}, **sections}))
    server.start()
    try:
        with server.server.http() as http:
            body = [{"model": "m", "input": _script(n), "background": True} for n in range(RUNS)]
            ids = [http.post("/v1beta/interactions", json=b).json()["id"] for b in body]
        readers = [ResumingReader(server, i, seconds=30) for i in ids]
        for reader in readers:
            reader.start()
        cut = rng.randrange(3, 18)  # the crash comes once the first client has seen this many events
        wait_for(lambda: len(readers[0].events) >= cut)
        server.kill()
        server.start()
        for reader in readers:
            reader.join(30)
        with server.server.http() as http:
            stored = [http.get(f"/v1beta/interactions/{i}").json() for i in ids]
            with ThreadPoolExecutor(RUNS) as pool:  # uninterrupted runs of the same scripts, side by side
                reference = list(pool.map(lambda n: _create(server, {"model": "m", "input": _script(n)}), range(RUNS)))
    finally:
        server.stop()
    for reader, got, clean in zip(readers, stored, reference, strict=True):
        assert reader.done and reader.failure is None and not reader.unexpected, (reader.failure, reader.unexpected)
        check_ids(reader.events)
        assert got["status"] == "completed", got
        assert streamed_text(reader.events) == model_text(got["steps"]) == model_text(clean["steps"])
        assert [s["type"] for s in got["steps"]] == [s["type"] for s in clean["steps"]]
        assert sum(e["event_type"] == "interaction.created" for e in reader.events) == 1
    assert any(reader.connections > 1 for reader in readers), "the kill came after every run had ended"


def test_a_backend_that_cannot_continue_restarts_the_cut_step_under_a_marker(tmp_path: Path) -> None:
    """Without Capabilities.continuation, the step the crash cut is closed as it was, an
    interaction.status_update (in_progress) marks the restart, and the round starts again in a new step."""
    models = {"models.m": {"backend": "scripted", "inline": True, "continuation": False}}
    server = CrashingServer(LiveServer(tmp_path, models))
    server.start()
    script = json.dumps({"script": [{"text": "cut "}, {"sleep_ms": 1000}, {"text": "here"}]})
    try:
        with server.server.http() as http:
            body = {"model": "m", "input": script, "background": True}
            interaction_id = http.post("/v1beta/interactions", json=body).json()["id"]
        reader = ResumingReader(server, interaction_id, seconds=30)
        reader.start()
        wait_for(lambda: any(e.get("delta", {}).get("text") == "cut " for e in reader.events))
        server.kill()
        server.start()
        reader.join(30)
        with server.server.http() as http:
            got = http.get(f"/v1beta/interactions/{interaction_id}").json()
    finally:
        server.stop()
    assert reader.done and reader.connections == 2, (reader.failure, reader.unexpected)
    joined = reader.events
    check_ids(joined)
    kinds = [(e["event_type"], e.get("index"), e.get("status")) for e in joined]
    assert kinds[2:] == [
        ("step.start", 0, None),
        ("step.delta", 0, None),
        ("step.stop", 0, None),  # the cut step, closed as it was
        ("interaction.status_update", None, "in_progress"),  # the restart
        ("step.start", 1, None),
        ("step.delta", 1, None),
        ("step.delta", 1, None),
        ("step.stop", 1, None),
        ("interaction.completed", None, None),
    ]
    assert got["status"] == "completed"
    assert model_text(got["steps"]) == ["cut ", "cut here"]  # the scripted double replays its round from the start


def test_the_scripted_double_does_not_wait_again_for_what_was_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Continuing, it skips the pauses before events the log has (that time was spent before the crash) and
    keeps those before the events still to come."""
    waited: list[float | None] = []

    async def wait(pause: Any) -> None:
        waited.append(pause.seconds)

    monkeypatch.setattr(scripted._Pause, "wait", wait)
    script = {"script": [{"text": "a "}, {"sleep_ms": 5000}, {"text": "b "}, {"sleep_ms": 7}, {"text": "c"}]}
    request = GenerationRequest(
        model="m", history=[UserInputStep(content=[TextContent(text=json.dumps(script))])], turn_start=0
    )
    request.resume = Resume(steps=[], open_step="model_output", prefill="a b ")

    async def play() -> list[Any]:
        backend = scripted.ScriptedBackend(scripted.ScriptedOptions(inline=True))
        return [event async for event in backend.generate(request)]

    events = asyncio.run(play())
    assert [e for e in events if isinstance(e, TextChunk)] == [TextChunk("c")]
    assert waited == [0.007]
