"""Soak: one background run longer than 10 minutes, read over one connection and, at the same time, over many
resumes (issue 15, item 4).

    scripts/isolated .venv/bin/python bench/long_run.py [--minutes 11] [--store sqlite|postgresql]

Starts a server (scripted model, default server settings: keep-alive every 15 s, idle connections closed after
15 s; ``limits.run_timeout_seconds`` raised above the run) and creates one background run whose script writes a
word every 2 s, with a silence of 45 s after every 90 words (longer than the keep-alive period, the idle timeout and
the default lease). Two clients follow it:
- one connection: the streaming create itself, read raw (httpx), counting ``: keepalive`` comments;
- resumes: google-genai, dropping its connection once 30 s have passed since it connected (at the next event)
  and resuming with the last event id it saw.
Both joined streams must equal the stored log (GET ``?stream=true``), with event ids 1, 2, 3, ... The table
gives, per client: its time, events, connections, gaps and duplicates, keep-alives seen, and whether its stream
is the stored log. The exit status is 1 if anything differs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from google import genai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from live import LiveServer

WORD_SECONDS = 2.0
RESUME_EVERY = 30.0  # seconds


def script(minutes: float, silence: float, every: int) -> str:
    """A word every WORD_SECONDS, and after every ``every`` words a new step after ``silence`` seconds, for
    about ``minutes`` in all."""
    events: list[dict[str, Any]] = [{"thought": "A long one."}]
    total, i = 0.0, 0
    while total < minutes * 60:
        events += [{"text": f"w{i} "}, {"sleep_ms": int(WORD_SECONDS * 1000)}]
        total += WORD_SECONDS
        i += 1
        if i % every == 0:
            events += [{"break": True}, {"sleep_ms": int(silence * 1000)}]
            total += silence
    return json.dumps({"script": events})


class Follower(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self.keepalives = 0
        self.seconds = 0.0
        self.error: str | None = None

    def run(self) -> None:
        start = time.monotonic()
        try:
            self.follow()
        except Exception as exc:  # reported in the table
            self.error = f"{type(exc).__name__}: {exc}"
        self.seconds = time.monotonic() - start

    def follow(self) -> None:
        raise NotImplementedError


class OneConnection(Follower):
    """The streaming create, read raw on one connection."""

    def __init__(self, server: LiveServer, body: dict[str, Any]) -> None:
        super().__init__()
        self.server, self.body = server, body
        self.created = threading.Event()

    def follow(self) -> None:
        timeout = httpx.Timeout(60.0, connect=10.0)  # a read waits at most a keep-alive period
        with (
            self.server.http(timeout=timeout) as http,
            http.stream("POST", "/v1beta/interactions", json=self.body) as r,
        ):
            self.connections = 1
            r.raise_for_status()
            for line in r.iter_lines():
                if line == ": keepalive":
                    self.keepalives += 1
                elif line.startswith("data: ") and line != "data: [DONE]":
                    self.events.append(json.loads(line[6:]))
                    self.created.set()


class Resumes(Follower):
    """google-genai, reconnecting every RESUME_EVERY seconds (at the next event) after the last event id."""

    def __init__(self, server: LiveServer, interaction_id: str) -> None:
        super().__init__()
        self.client = genai.Client(api_key="k", http_options={"base_url": server.url})
        self.id = interaction_id

    def follow(self) -> None:
        while not self.events or self.events[-1]["event_type"] not in ("interaction.completed", "error"):
            after = {"last_event_id": self.events[-1]["event_id"]} if self.events else {}
            stream = self.client.interactions.get(self.id, stream=True, **after)  # type: ignore[call-overload]
            self.connections += 1
            connected = time.monotonic()
            for event in stream:
                self.events.append(event.model_dump(mode="json", exclude_none=True, by_alias=True))
                if time.monotonic() - connected >= RESUME_EVERY:
                    break
            stream.close()


def gaps_and_repeats(events: list[dict[str, Any]]) -> tuple[int, int]:
    ids = [int(e["event_id"]) for e in events]
    repeats = len(ids) - len(set(ids))
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(ids) if b > a + 1) + (ids[0] - 1 if ids else 0)
    return gaps, repeats


@contextlib.contextmanager
def store_section(kind: str) -> Iterator[dict[str, str]]:
    if kind == "sqlite":
        yield {}
        return
    import pg

    with pg.scratch_database() as database:
        yield {"url": pg.url(database)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=11.0)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--silence", type=float, default=45.0, help="seconds of each silence")
    parser.add_argument("--silence-every", type=int, default=90, help="words between silences")
    args = parser.parse_args()
    limits = {"run_timeout_seconds": args.minutes * 60 + 600}
    body = {
        "model": "m",
        "input": script(args.minutes, args.silence, args.silence_every),
        "background": True,
        "stream": True,
    }
    with tempfile.TemporaryDirectory() as tmp, store_section(args.store) as store:
        sections = {"store": store, "limits": limits, "models.m": {"backend": "scripted", "inline": True}}
        server = LiveServer(Path(tmp), sections).start()
        try:
            one = OneConnection(server, body)
            one.start()
            if not one.created.wait(60):
                raise SystemExit(f"no interaction.created: {one.error}")
            interaction_id = one.events[0]["interaction"]["id"]
            print(f"{args.store}: interaction {interaction_id}, about {args.minutes:g} minutes", flush=True)
            resumes = Resumes(server, interaction_id)
            resumes.start()
            one.join()
            resumes.join(120)
            client = genai.Client(api_key="k", http_options={"base_url": server.url})
            stored = [e.model_dump(mode="json", exclude_none=True, by_alias=True)
                      for e in client.interactions.get(interaction_id, stream=True)]  # fmt: skip
            status = client.interactions.get(interaction_id).status
        finally:
            server.stop()
    print(f"status {status}; stored log: {len(stored)} events")
    print(f"{'client':<15}{'seconds':>9}{'events':>8}{'connections':>13}{'gaps':>6}{'repeats':>9}"
          f"{'keepalives':>12}{'= stored':>10}  error")  # fmt: skip
    ok = status == "completed"
    for name, follower in (("one connection", one), ("resumes", resumes)):
        gaps, repeats = gaps_and_repeats(follower.events)
        same = follower.events == stored
        ok = ok and same and not gaps and not repeats and follower.error is None
        keepalives = str(follower.keepalives) if isinstance(follower, OneConnection) else "-"
        print(f"{name:<15}{follower.seconds:>9.1f}{len(follower.events):>8}{follower.connections:>13}{gaps:>6}"
              f"{repeats:>9}{keepalives:>12}{same!s:>10}  {follower.error or ''}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
