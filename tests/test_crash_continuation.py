"""Runs survive a crash: the server is killed (SIGKILL) in the middle of background runs and restarted, and
every run goes on from its durable log to the end it would have had without the crash. Clients that resume
with the last event id they saw get one gap-free, duplicate-free stream."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import pg
from live import LiveServer

RUNS = 4


def _script(n: int) -> str:
    words = [{"text": f"w{n}.{i} "} for i in range(12)]
    paced = [e for w in words for e in (w, {"sleep_ms": 40})]
    return json.dumps({"script": [{"thought": "plan"}, *paced[:12], {"break": True}, *paced[12:]]})


class _Reader(threading.Thread):
    """Follows one interaction's stream until its connection ends, keeping each event as it came."""

    def __init__(self, server: LiveServer, interaction_id: str, after: str | None = None) -> None:
        super().__init__(daemon=True)
        self.server, self.id, self.after = server, interaction_id, after
        self.events: list[dict[str, Any]] = []
        self.done = False

    def run(self) -> None:
        query = "stream=true" + (f"&last_event_id={self.after}" if self.after else "")
        try:
            with self.server.http() as http, http.stream("GET", f"/v1beta/interactions/{self.id}?{query}") as r:
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass  # the server died under it


def _text(steps: list[dict[str, Any]]) -> list[str]:
    return ["".join(c.get("text", "") for c in s.get("content") or []) for s in steps if s["type"] == "model_output"]


def _streamed_text(events: list[dict[str, Any]]) -> list[str]:
    texts: dict[int, str] = {}
    for e in events:
        if e["event_type"] == "step.start" and e["step"]["type"] == "model_output":
            texts[e["index"]] = ""
        elif e["event_type"] == "step.delta" and e["delta"]["type"] == "text":
            texts[e["index"]] += e["delta"]["text"]
    return [texts[i] for i in sorted(texts)]


def _wait(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize(("seed", "database"), [(1, "sqlite"), (2, "sqlite"), (3, "postgresql")])
def test_background_runs_killed_at_a_random_moment_continue_after_the_restart(
    tmp_path: Path, seed: int, database: str
) -> None:
    if database == "postgresql":
        with pg.scratch_database() as name:
            _crash_and_continue(tmp_path, random.Random(seed), {"store": {"url": pg.url(name)}})
    else:
        _crash_and_continue(tmp_path, random.Random(seed), {})


def _crash_and_continue(tmp_path: Path, rng: random.Random, sections: dict[str, Any]) -> None:
    server = LiveServer(tmp_path, {"models.m": {"backend": "scripted", "inline": True}, **sections})
    server.start()
    try:
        with server.http() as http:
            ids = [
                http.post("/v1beta/interactions", json={"model": "m", "input": _script(n), "background": True}).json()[
                    "id"
                ]
                for n in range(RUNS)
            ]
        readers = [_Reader(server, i) for i in ids]
        for reader in readers:
            reader.start()
        cut = rng.randrange(3, 18)  # the crash comes once the first client has seen this many events
        _wait(lambda: len(readers[0].events) >= cut)
        server.kill()
        for reader in readers:
            reader.join(5)
        server.start()
        last_seen = [r.events[-1]["event_id"] if r.events else None for r in readers]
        resumed = [_Reader(server, i, after) for i, after in zip(ids, last_seen, strict=True)]
        for reader in resumed:
            reader.start()
        for reader in resumed:
            reader.join(30)
        with server.http() as http:
            stored = [http.get(f"/v1beta/interactions/{i}").json() for i in ids]
            reference = [
                http.post("/v1beta/interactions", json={"model": "m", "input": _script(n)}).json() for n in range(RUNS)
            ]
    finally:
        server.stop()
    for before, after, got, clean in zip(readers, resumed, stored, reference, strict=True):
        assert after.done
        joined = before.events + after.events
        assert [e["event_id"] for e in joined] == [str(n) for n in range(1, len(joined) + 1)]  # no gap, no repeat
        assert got["status"] == "completed", got
        assert _streamed_text(joined) == _text(got["steps"]) == _text(clean["steps"])
        assert [s["type"] for s in got["steps"]] == [s["type"] for s in clean["steps"]]
        assert sum(e["event_type"] == "interaction.created" for e in joined) == 1


def test_a_backend_that_cannot_continue_restarts_the_cut_step_under_a_marker(tmp_path: Path) -> None:
    """Without Capabilities.continuation, the step the crash cut is closed as it was, an
    interaction.status_update (in_progress) marks the restart, and the round starts again in a new step."""
    models = {"models.m": {"backend": "scripted", "inline": True, "continuation": False}}
    server = LiveServer(tmp_path, models).start()
    script = json.dumps({"script": [{"text": "cut "}, {"sleep_ms": 100}, {"text": "here"}]})
    with server.http() as http:
        body = {"model": "m", "input": script, "background": True}
        interaction_id = http.post("/v1beta/interactions", json=body).json()["id"]
        reader = _Reader(server, interaction_id)
        reader.start()
        _wait(lambda: any(e.get("delta", {}).get("text") == "cut " for e in reader.events))
        server.kill()
    reader.join(5)
    server.start()
    try:
        after = _Reader(server, interaction_id, reader.events[-1]["event_id"])
        after.start()
        after.join(30)
        with server.http() as http:
            got = http.get(f"/v1beta/interactions/{interaction_id}").json()
    finally:
        server.stop()
    joined = reader.events + after.events
    assert [e["event_id"] for e in joined] == [str(n) for n in range(1, len(joined) + 1)]
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
    assert _text(got["steps"]) == ["cut ", "cut here"]  # the scripted double replays its round from the start
