"""Issue 15, item 4 (liveness), on SQLite and on PostgreSQL: a run that lasts several keep-alive, idle-connection
and lease periods, with silences longer than them, works over one connection (keep-alive comments arrive while
the model is silent, and the connection is not closed as idle) and over many resumes (a client reconnecting
every few events with the last event id it saw). Both streams are the stored log exactly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai

from live import LiveServer
from pg import store_section
from resuming import TERMINAL, check_ids, dump

SILENCE_MS = 2600  # each silence: over two keep-alive periods, over the idle timeout and the lease
SCRIPT = [
    {"text": "Before "},
    {"sleep_ms": SILENCE_MS},
    *[e for i in range(8) for e in ({"text": f"w{i} "}, {"sleep_ms": 100})],
    {"break": True},
    {"text": "middle "},
    {"sleep_ms": SILENCE_MS},
    {"text": "after."},
]
SETTINGS = {
    "server": {"keepalive_seconds": 1.0, "idle_timeout_seconds": 1.0},
    "limits": {"run_lease_seconds": 1.0, "run_stall_seconds": 5.0},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with store_section(request.param) as store:
        models = {"models.m": {"backend": "scripted", "inline": True}}
        server = LiveServer(tmp_path, {**SETTINGS, "store": store, **models}).start()
        try:
            yield server
        finally:
            server.stop()


def one_connection(server: LiveServer, body: dict[str, Any], created: Callable[[str], None]) -> list[tuple[str, Any]]:
    """A streaming background create read to its end on one connection: ("event", payload) and ("keepalive",
    None) in the order they came. ``created`` gets the interaction's id."""
    items: list[tuple[str, Any]] = []
    with server.http() as http, http.stream("POST", "/v1beta/interactions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line == ": keepalive":
                items.append(("keepalive", None))
            elif line.startswith("data: ") and line != "data: [DONE]":
                items.append(("event", json.loads(line[6:])))
                if len(items) == 1:
                    created(items[0][1]["interaction"]["id"])
    return items


class Resumer(threading.Thread):
    """Follows an interaction through google-genai, dropping the connection every ``every`` events and
    resuming after the last event id it saw."""

    def __init__(self, server: LiveServer, interaction_id: str, every: int) -> None:
        super().__init__(daemon=True)
        self.client = genai.Client(api_key="k", http_options={"base_url": server.url})
        self.id, self.every = interaction_id, every
        self.events: list[dict[str, Any]] = []
        self.connections = 0

    def run(self) -> None:
        while not self.events or self.events[-1]["event_type"] not in TERMINAL:
            after = {"last_event_id": self.events[-1]["event_id"]} if self.events else {}
            stream = self.client.interactions.get(self.id, stream=True, **after)  # type: ignore[call-overload]
            self.connections += 1
            for n, event in enumerate(stream, start=1):
                self.events.append(dump(event))
                if n == self.every:
                    break
            stream.close()


def test_a_long_silent_run_over_one_connection_and_over_many_resumes(live: LiveServer) -> None:
    body = {"model": "m", "input": json.dumps({"script": SCRIPT}), "background": True, "stream": True}
    resumers: list[Resumer] = []

    def follow(interaction_id: str) -> None:
        resumers.append(Resumer(live, interaction_id, every=3))
        resumers[0].start()

    started = time.monotonic()
    items = one_connection(live, body, follow)
    elapsed = time.monotonic() - started
    resumers[0].join(30)
    assert not resumers[0].is_alive(), "the resuming client never got to the end"

    events = [payload for kind, payload in items if kind == "event"]
    check_ids(events)
    assert events[-1]["event_type"] == "interaction.completed" and events[-1]["interaction"]["status"] == "completed"
    assert elapsed > 2 * SILENCE_MS / 1000, "the run was not longer than its silences"
    # Keep-alive comments come in each silence, and not while the model streams (every 0.1 s).
    texts = [_text(p) if kind == "event" else kind for kind, p in items]
    before, middle = texts.index("Before "), texts.index("middle ")
    assert "keepalive" in texts[before : texts.index("w0 ")], texts
    assert "keepalive" not in texts[texts.index("w0 ") : texts.index("w7 ")], texts
    assert "keepalive" in texts[middle : texts.index("after.")], texts
    resumer = resumers[0]
    assert resumer.events == events, "the resumed stream is not the one-connection stream"
    assert resumer.connections >= len(events) // 3
    client = genai.Client(api_key="k", http_options={"base_url": live.url})
    assert [dump(e) for e in client.interactions.get(events[0]["interaction"]["id"], stream=True)] == events
    assert client.interactions.get(events[0]["interaction"]["id"]).status == "completed"


def _text(event: dict[str, Any]) -> str | None:
    return event.get("delta", {}).get("text")
