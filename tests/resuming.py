"""Helpers for tests that cut streams and kill servers: a google-genai reader that resumes with the last event id
it saw until its interaction ends, a server whose kills and restarts readers can wait on, and the checks every
such test makes (event ids without gap or repeat, text streamed = text stored)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from google import genai
from google.genai import _interactions_errors

from live import LiveServer

TERMINAL = ("interaction.completed", "error")


def wait_for(condition: Callable[[], object], seconds: float = 20.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(0.01)


def dump(event: Any) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True, by_alias=True)  # type: ignore[no-any-return]


def normal(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what differs between two runs of one script: the interaction's id, its timestamps and
    the thought signature (it signs the id)."""
    out = json.loads(json.dumps(event))
    if "interaction" in out:
        for key in ("id", "created", "updated"):
            out["interaction"][key] = key
    if "interaction_id" in out:
        out["interaction_id"] = "id"
    if out.get("delta", {}).get("type") == "thought_signature":
        out["delta"]["signature"] = "signature"
    return out


def normal_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored steps without the thought signatures (they sign the interaction's id)."""
    return [{k: v for k, v in s.items() if k != "signature"} for s in steps]


def model_text(steps: list[dict[str, Any]]) -> list[str]:
    """Each model_output step's text, as stored."""
    return ["".join(c.get("text", "") for c in s.get("content") or []) for s in steps if s["type"] == "model_output"]


def streamed_text(events: list[dict[str, Any]]) -> list[str]:
    """Each model_output step's text, as streamed: its text deltas joined."""
    texts: dict[int, str] = {}
    for e in events:
        if e["event_type"] == "step.start" and e["step"]["type"] == "model_output":
            texts[e["index"]] = ""
        elif e["event_type"] == "step.delta" and e["delta"]["type"] == "text":
            texts[e["index"]] += e["delta"]["text"]
    return [texts[i] for i in sorted(texts)]


def check_ids(events: list[dict[str, Any]]) -> None:
    ids = [e["event_id"] for e in events]
    assert ids == [str(n) for n in range(1, len(events) + 1)], f"a gap or a repeat in the event ids: {ids}"


class CrashingServer:
    """A live server that is killed (SIGKILL) and restarted; readers wait here for the next life of it."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.life = 0  # one more at each kill
        self.up = False
        self.changed = threading.Condition()
        # One client for every reader: the first client of a process takes a while (the SDK's lazy imports), and
        # each later one a tenth of a second, which twenty readers would spend before they start.
        self.client = genai.Client(api_key="k", http_options={"base_url": server.url, "retry_options": {"attempts": 1}})

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()
        with self.changed:
            self.up = True
            self.changed.notify_all()

    def kill(self) -> None:
        with self.changed:  # before the kill: a reader whose stream the kill breaks sees that it came
            self.life += 1
            self.up = False
            self.changed.notify_all()
        self.server.kill()

    def stop(self) -> None:
        self.server.stop()

    def wait_up(self, deadline: float, after: int | None = None) -> bool:
        """Wait until the server is up (in a life later than ``after``, if given); False at the deadline."""
        with self.changed:
            return self.changed.wait_for(
                lambda: self.up and (after is None or self.life > after), max(deadline - time.monotonic(), 0)
            )


class ResumingReader(threading.Thread):
    """Follows one interaction's stream through google-genai until its terminal event. When the connection ends
    without it (the server was killed), the reader waits for the server's next life and resumes with the
    last event id it saw. A connection that ends while no kill came is kept in ``unexpected``."""

    def __init__(self, server: CrashingServer, interaction_id: str, seconds: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.server, self.id = server, interaction_id
        self.deadline = time.monotonic() + seconds
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self.unexpected: list[str] = []
        self.done = False
        self.failure: str | None = None

    def run(self) -> None:
        client = self.server.client
        while not self.done and self.failure is None:
            life = self.server.life
            if not self.server.wait_up(self.deadline):
                self.failure = "the server was not up again before the deadline"
                return
            try:
                self._follow(client)
            except (_interactions_errors.APIConnectionError, httpx.HTTPError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except _interactions_errors.APIError as exc:  # an HTTP error answer: a real problem
                self.failure = f"{type(exc).__name__}: {exc}"
                return
            else:
                problem = "the stream ended without a terminal event"
            if self.done:
                return
            if time.monotonic() > self.deadline:
                self.failure = f"deadline passed ({problem})"
            elif self.server.life == life:  # no kill explains it
                self.unexpected.append(problem)
                if len(self.unexpected) > 3:
                    self.failure = f"the stream kept breaking without a kill: {self.unexpected}"
            else:
                self.server.wait_up(self.deadline, after=life)

    def _follow(self, client: genai.Client) -> None:
        after = {"last_event_id": self.events[-1]["event_id"]} if self.events else {}
        self.connections += 1
        for event in client.interactions.get(self.id, stream=True, **after):  # type: ignore[call-overload]
            self.events.append(dump(event))
            if event.event_type in TERMINAL:
                self.done = True


class Follower(threading.Thread):
    """Follows one interaction's stream on one server, over raw HTTP, until its connection ends, keeping when
    each event came; started at once."""

    def __init__(
        self, server: LiveServer, interaction_id: str, after: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.id, self.after, self.headers = server, interaction_id, after, headers or {}
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # when each event came (monotonic)
        self.done = False
        self.start()

    def run(self) -> None:
        query = "stream=true" + (f"&last_event_id={self.after}" if self.after else "")
        try:
            with (
                self.server.http(headers=self.headers) as http,
                http.stream("GET", f"/v1beta/interactions/{self.id}?{query}") as r,
            ):
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        self.arrived.append(time.monotonic())
        except httpx.HTTPError:
            pass  # its server died under it

    def last_id(self) -> str | None:
        return self.events[-1]["event_id"] if self.events else None
