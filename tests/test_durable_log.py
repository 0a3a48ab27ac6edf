"""Every event of a stored interaction is durable before any reader gets it: the store's events table holds it
(group committed), and the interaction's row is committed before its first event is shown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import pg
from inprocess import create, scripted_service
from live import LiveServer
from openinteractions.store.base import FinalState, StoredInteraction
from openinteractions.store.sql import SqlStore
from openinteractions.store.sqlite import sqlite_url

SCRIPT = json.dumps({"script": [{"text": "one"}, {"text": " two"}, {"hang": True}]})


def _hold_commits(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Commits wait until the returned event is set (as if the database were slow)."""
    release = asyncio.Event()
    monkeypatch.setattr(store, "_commit_inline", lambda batch: False)
    flush = store._flush

    async def held() -> None:
        await release.wait()
        await flush()

    monkeypatch.setattr(store, "_flush", held)
    return release


def test_no_event_reaches_a_reader_before_it_and_the_row_are_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        service = scripted_service(tmp_path)
        await service.start()
        store = service.store
        assert isinstance(store, SqlStore)
        release = _hold_commits(store, monkeypatch)
        try:
            run = await create(service, SCRIPT, stream=True)
            frames = service.creation_stream(run)
            first = asyncio.ensure_future(anext(frames))
            for _ in range(50):  # the run has appended its first events by now; none is committed
                await asyncio.sleep(0)
            assert service.log.frames(run.id) and not first.done()
            assert await store.get(run.id, "o", service.clock()) is None
            release.set()
            chunk = await asyncio.wait_for(first, 5)
            assert chunk.startswith(b"event: interaction.created\n")
            assert await store.get(run.id, "o", service.clock()) is not None  # the row came first
            seen = chunk
            while b'"text":" two"' not in seen:  # the durable log has every event a reader got
                seen += await asyncio.wait_for(anext(frames), 5)
            assert b"".join(await store.run_events(run.id)).startswith(seen)
            await frames.aclose()
            await service.stop_run(run)
            assert await store.run_events(run.id) == []  # the result holds the log now
        finally:
            release.set()  # else a failing check leaves the run waiting for its writes forever
            await service.stop()

    asyncio.run(main())


def test_a_stream_create_killed_after_its_first_event_leaves_a_known_id(tmp_path: Path) -> None:
    """The server is killed as soon as interaction.created reaches the client: after the restart, the id
    is there (it used to be a 404 half the time: the event was sent before the row was committed)."""
    server = LiveServer(tmp_path, {"models.m": {"backend": "scripted", "inline": True}})
    body = {"model": "m", "input": SCRIPT, "stream": True}
    for _ in range(4):
        server.start()
        with server.http() as http, http.stream("POST", "/v1beta/interactions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: interaction.created"
            interaction_id = json.loads(next(lines)[6:])["interaction"]["id"]
            server.kill()
        server.start()
        try:
            with server.http() as http:
                assert http.get(f"/v1beta/interactions/{interaction_id}").status_code == 200
        finally:
            server.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_leases_are_claimed_once_renewed_and_taken_over_when_they_run_out(tmp_path: Path, database: str) -> None:
    """The lease columns: a claim takes the unfinished runs whose lease ran out or names a dead server; a
    heartbeat renews only the leases its server holds; a result is written only by the server holding the
    lease, and clears it; a run's event rows go with its result, and with a deleted or expired interaction."""
    a, b, c, d = (letter * 16 for letter in "abcd")  # server ids

    async def scenario(url: str | Any) -> None:
        store = SqlStore(url)
        await store.start()
        await store.join(a)
        committed: list[tuple[str, int]] = []
        store.watch_events(lambda i, seq: committed.append((i, seq)), lambda i, exc: None)
        for name in ("r1", "r2", "r3"):
            await store.insert(StoredInteraction(id=name, owner="o", status="in_progress", created_at=1.0,
                                                 updated_at=1.0, expires_at=50.0 if name == "r3" else 4e9,
                                                 lease_owner=a, lease_until=10.0))  # fmt: skip
        for seq in (1, 2):
            store.append_event("r1", seq, f"event: e\ndata: {seq}\n\n".encode())
        store.append_event("r3", 1, b"event: e\ndata: 1\n\n")
        await store.heartbeat(["r1"], a, 20.0)  # after the events: committed with them, or after
        assert committed == [("r1", 1), ("r1", 2), ("r3", 1)]
        assert await store.run_events("r1") == [b"event: e\ndata: 1\n\n", b"event: e\ndata: 2\n\n"]
        assert await store.live_events({"r1": 1, "r3": 0, "nope": 0}) == {
            "r1": [b"event: e\ndata: 2\n\n"], "r3": [b"event: e\ndata: 1\n\n"], "nope": None}  # fmt: skip
        assert await store.leases() == ({a: 3}, {a})  # the leases name a; a is alive (on PostgreSQL: its lock)
        assert await store.claim(b, 5.0, 40.0, set()) == []  # every lease still holds
        taken = await store.claim(b, 15.0, 40.0, set())  # r2's ran out at 10; r1's renewed to 20
        assert [r.id for r in taken] == ["r2", "r3"]
        await store.heartbeat(["r1", "r2"], a, 60.0)  # r2 is b's now: a's heartbeat does not take it back
        assert await store.run_states(["r1", "r2", "gone"]) == {"r1": (a, False), "r2": (b, False)}
        assert [r.id for r in await store.claim(c, 50.0, 90.0, set())] == ["r2", "r3"]
        final = FinalState("completed", 2.0, "[]", None, None)
        await store.finish("r1", final, [b"event: e\ndata: 1\n\n", b"event: e\ndata: 2\n\n"])
        assert await store.run_events("r1") == []
        assert await store.live_events({"r1": 0}) == {"r1": None}  # ended
        await store.finish("r3", final, [b"event: e\ndata: 1\n\n"])  # c holds r3: a's result is not written
        assert await store.run_events("r3") == [b"event: e\ndata: 1\n\n"]
        assert (await store.get("r3", "o", 0.0)).status == "in_progress"  # type: ignore[union-attr]
        assert await store.claim(d, 50.0, 60.0, set()) == []  # c's leases hold until 90
        assert [r.id for r in await store.claim(d, 50.0, 90.0, {c}, limit=1)] == ["r2"]  # unless c is dead
        assert [r.id for r in await store.claim(d, 50.0, 90.0, {c})] == ["r3"]
        assert await store.request_cancel("r2", "o", 51.0) is True
        assert await store.request_cancel("r1", "o", 51.0) is False  # it has ended
        assert await store.run_states(["r2"]) == {"r2": (d, True)}
        assert await store.sweep(60.0) == 1  # r3 expired: its event rows go too
        assert await store.run_events("r3") == []
        assert await store.shared_secret("k", "first") == "first"
        assert await store.shared_secret("k", "second") == "first"
        await store.close()

    if database == "sqlite":
        asyncio.run(scenario(sqlite_url(tmp_path)))
    else:
        with pg.scratch_database() as name:
            asyncio.run(scenario(pg.url(name)))


def test_a_run_without_progress_is_failed_by_the_watchdog(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path, {"models.m": {"backend": "scripted", "inline": True}, "limits": {"run_stall_seconds": 0.4}}
    )
    server.start()
    try:
        with server.http() as http:
            body = {"model": "m", "input": json.dumps({"script": [{"text": "so far"}, {"hang": True}]})}
            got = http.post("/v1beta/interactions", json=body).json()
            lively = json.dumps({"script": [e for _ in range(6) for e in ({"text": "a "}, {"sleep_ms": 150})]})
            slow_but_moving = http.post("/v1beta/interactions", json={"model": "m", "input": lively}).json()
    finally:
        server.stop()
    assert got["status"] == "failed"
    assert got["errors"] == [
        {"code": "deadline_exceeded", "message": "the run made no progress for 0.4 s (limits.run_stall_seconds)"}
    ]
    assert got["steps"] == [{"type": "model_output", "content": [{"type": "text", "text": "so far"}]}]
    assert slow_but_moving["status"] == "completed"  # 0.9 s in all, never 0.4 s without an event
