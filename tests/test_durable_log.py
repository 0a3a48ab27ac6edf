"""Every event of a stored interaction is durable before any reader gets it: the store's events table holds it
(group committed), and the interaction's row is committed before its first event is shown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from inprocess import create, scripted_service
from live import LiveServer
from openinteractions.store.sql import SqlStore

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
        run = await create(service, SCRIPT, stream=True)
        frames = service.creation_stream(run)
        first = asyncio.ensure_future(anext(frames))
        try:
            for _ in range(50):  # the run has appended its first events by now; none is committed
                await asyncio.sleep(0)
            assert service.log.frames(run.id) and not first.done()
            assert await store.get(run.id, "o", service.clock()) is None
        finally:
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
