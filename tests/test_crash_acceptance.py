"""Acceptance (issue 15), "Crash test", on SQLite and on PostgreSQL: 20 background runs (17 scripted ones with
pauses, 3 on the embedded llama.cpp model), the server killed (SIGKILL) at random moments and restarted each
time. Every run reaches a terminal state that is not ``failed``, none is stuck; every client, following its run
through google-genai and resuming with the last event id it saw after each kill, gets one stream without gap or
repeat that is the stored log, its text the stored text; the scripted runs are continued (no restart marker)
and end as an uninterrupted run of the same script does, event for event.

The kill moments come from a seed, printed (and in every failure message); ``OPENINTERACTIONS_CRASH_SEED``
replays the same schedule (the moments are drawn delays after each restart, so the runs' progress at a kill
still varies a little with the machine's speed). The embedded model cannot continue a cut step yet: its runs
may restart the cut step under a marker instead, which the checks allow.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from google import genai

from live import LiveServer
from pg import store_section
from resuming import (
    CrashingServer,
    ResumingReader,
    check_ids,
    dump,
    model_text,
    normal,
    normal_steps,
    streamed_text,
)

SCRIPTED, EMBEDDED, KILLS = 17, 3, 4
LOOKUP = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
CONTINUING = "was left unfinished by a previous process: continuing it"


def script(n: int) -> dict[str, Any]:
    """The create body of scripted run ``n``: text with pauses, split into steps now and then; thoughts (with
    summaries on some), and a function call (requires_action) on some."""
    draw = random.Random(n)
    events: list[dict[str, Any]] = []
    if n % 3 == 0:
        events += [{"thought": f"Plan {n}."}, {"sleep_ms": 30}, {"thought": " Then write."}, {"sleep_ms": 30}]
    for i in range(draw.randrange(10, 100)):
        events += [{"text": f"w{n}.{i} "}, {"sleep_ms": draw.randrange(20, 70)}]
        if draw.random() < 0.1:
            events.append({"break": True})
    body: dict[str, Any] = {"model": "m", "background": True}
    if n % 4 == 1:
        events.append(
            {"call": {"name": "lookup", "arguments": {"n": n, "q": "x" * 40}, "chunks": 3, "id": f"c{n:07d}"}}
        )
        body["tools"] = [LOOKUP]
    if n % 6 == 0:
        body["generation_config"] = {"thinking_summaries": "auto"}
    return {**body, "input": json.dumps({"script": events})}


EMBEDDED_BODY = {
    "model": "smol",
    "input": "Tell me a long story about a lighthouse keeper and the sea.",
    "background": True,
    "generation_config": {"max_output_tokens": 48},
}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_runs_survive_random_kills(tmp_path: Path, database: str) -> None:
    seed = int(os.environ.get("OPENINTERACTIONS_CRASH_SEED") or random.randrange(2**32))
    draw = random.Random(seed)
    delays = [round(draw.uniform(0.0, 0.8), 3) for _ in range(KILLS)]
    print(f"crash test on {database}: seed {seed}; kills {delays} s after each (re)start")
    with store_section(database) as store:
        live = LiveServer(
            tmp_path,
            {
                "store": store,
                "models.m": {"backend": "scripted", "inline": True},
                "models.smol": {"backend": "llamacpp", "context_size": 1024, "parallel": 4, "threads": 1},
            },
        )
        server = CrashingServer(live)
        server.start()
        try:
            _crash_and_check(server, delays, f"seed {seed} on {database}")
        finally:
            server.stop()


def _crash_and_check(server: CrashingServer, delays: list[float], seed: str) -> None:
    client = genai.Client(api_key="k", http_options={"base_url": server.url})
    bodies = [script(n) for n in range(SCRIPTED)] + [EMBEDDED_BODY] * EMBEDDED
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda body: client.interactions.create(**body).id, bodies))
    readers = [ResumingReader(server, i, seconds=90) for i in ids]
    for reader in readers:
        reader.start()
    logs = _kill_now_and_then(server, readers, delays)
    for reader in readers:
        reader.join(max(reader.deadline - time.monotonic(), 0))
    stuck = [r.id for r in readers if r.is_alive()]
    assert not stuck, f"{seed}: runs whose stream never ended: {stuck}"
    for reader in readers:
        assert reader.failure is None and not reader.unexpected, (seed, reader.id, reader.failure, reader.unexpected)
    logs.append("".join(server.server.log))
    continued = sum(CONTINUING in line for log in logs for line in log.splitlines())
    resumed = sum(r.connections > 1 for r in readers[:SCRIPTED])
    assert resumed >= SCRIPTED // 3, f"{seed}: only {resumed} scripted runs were still going at a kill"

    markers = [sum(e["event_type"] == "interaction.status_update" for e in r.events) - 1 for r in readers[SCRIPTED:]]
    print(f"{len(logs) - 1} kills, {continued} runs continued; connections per client: "
          f"{[r.connections for r in readers]}; restart markers of the embedded runs: {markers}")  # fmt: skip
    stored = [client.interactions.get(i) for i in ids]
    for reader, interaction in zip(readers, stored, strict=True):
        _check_run(client, reader, interaction.model_dump(mode="json", exclude_none=True, by_alias=True), seed)
    reference = _uninterrupted(server, client, bodies[:SCRIPTED])
    for n, (reader, interaction, (events, steps)) in enumerate(zip(readers, stored, reference, strict=False)):
        got = interaction.model_dump(mode="json", exclude_none=True, by_alias=True)
        assert [s["type"] for s in got["steps"]] == [s["type"] for s in steps], f"{seed}: run {n}"
        assert normal_steps(got["steps"]) == normal_steps(steps), f"{seed}: run {n} ended unlike an uninterrupted one"
        assert [normal(e) for e in reader.events] == [normal(e) for e in events], f"{seed}: run {n}'s stream"
        restarts = [e for e in reader.events if e["event_type"] == "interaction.status_update"]
        assert len(restarts) == 1, f"{seed}: run {n} was restarted, not continued"


def _kill_now_and_then(server: CrashingServer, readers: list[ResumingReader], delays: list[float]) -> list[str]:
    """Kill the server each drawn delay after it was last (re)started, and start it again; each life's log."""
    logs = []
    for delay in delays:
        if all(r.done for r in readers):
            print("every run had ended before the next kill")
            break
        time.sleep(delay)  # the drawn moment of the kill, not a wait for anything
        server.kill()
        logs.append("".join(server.server.log))
        server.start()
    return logs


def _check_run(client: genai.Client, reader: ResumingReader, got: dict[str, Any], seed: str) -> None:
    events = reader.events
    what = f"{seed}: interaction {reader.id}"
    check_ids(events)
    assert events[-1]["event_type"] == "interaction.completed", f"{what} ended with {events[-1]}"
    assert got["status"] == events[-1]["interaction"]["status"], what
    assert got["status"] in ("completed", "requires_action", "incomplete"), f"{what}: {got['status']}"
    assert sum(e["event_type"] == "interaction.created" for e in events) == 1, what
    log = [dump(e) for e in client.interactions.get(reader.id, stream=True)]
    assert log == events, f"{what}: the joined stream is not the stored log"
    assert streamed_text(events) == model_text(got["steps"]), f"{what}: the text streamed is not the text stored"


def _uninterrupted(
    server: CrashingServer, client: genai.Client, bodies: list[dict[str, Any]]
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Each script's events and stored steps from a run that nothing interrupted, all at once."""
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda body: client.interactions.create(**body).id, bodies))
    readers = [ResumingReader(server, i, seconds=60) for i in ids]
    for reader in readers:
        reader.start()
    out = []
    for reader in readers:
        reader.join(60)
        assert reader.done and reader.connections == 1, (reader.failure, reader.unexpected)
        steps = client.interactions.get(reader.id).model_dump(mode="json", exclude_none=True, by_alias=True)["steps"]
        out.append((reader.events, steps))
    return out
