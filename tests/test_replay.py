"""Stored logs are replayed from the store a page at a time, and live readers far behind take bounded chunks:
the bytes are the same as the whole log's, from any resume point."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg
from inprocess import create, scripted_service, until
from openinteractions.api.app import build_service
from openinteractions.api.sse import EventStreamResponse
from openinteractions.config import Settings
from openinteractions.engine import replay
from openinteractions.errors import ApiError
from openinteractions.events import log as log_module
from openinteractions.events.log import DONE, MAX_CHUNK_BYTES, MemoryEventLog, StreamCut, split_frames
from openinteractions.schema.events import InteractionStatusUpdateEvent
from openinteractions.store import blobs, sql, sqlite
from openinteractions.store.base import FinalState, StoredInteraction

SCRIPT = json.dumps({"script": [{"text": "a few words"}, {"break": True}, {"text": "more"}, {"text": "and more"}]})


async def _stored(service: object, text: str) -> str:
    """A run of ``text``, finished and forgotten: its log is read from the store from now on."""
    run = await create(service, text)  # type: ignore[arg-type]
    await until(lambda: run.id not in service.runs)  # type: ignore[attr-defined]
    return run.id


async def _drain(stream: object) -> bytes:
    return b"".join([chunk async for chunk in stream])  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """SQLite reads a page through incremental blob I/O, PostgreSQL with substr(): both are checked."""
    if request.param == "sqlite":
        yield None
        return
    with pg.scratch_database() as name:
        yield pg.url(name)


@pytest.mark.parametrize("page", [7, 64, 1 << 20], ids=["7-byte pages", "64-byte pages", "one page"])
def test_a_paged_replay_is_the_stored_log_from_every_resume_point(
    tmp_path: Path, store_url: str | None, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "PAGE_BYTES", page)
    settings = Settings(
        models={"m": {"backend": "scripted", "inline": True}},
        store={"data_dir": tmp_path, "url": store_url},
        signing_key="k" * 32,
    )

    async def main() -> tuple[bytes, list[bytes], ApiError]:
        service = build_service(settings, tmp_path)
        await service.start()
        interaction_id = await _stored(service, SCRIPT)
        blob = await service.store.events(interaction_id)
        count = len(split_frames(blob))
        replays = [await _drain(await service.events(interaction_id, "o", str(n) if n else None))
                   for n in range(count + 1)]  # fmt: skip
        with pytest.raises(ApiError) as beyond:
            await service.events(interaction_id, "o", str(count + 1))
        await service.stop()
        return blob, replays, beyond.value

    blob, replays, beyond = asyncio.run(main())
    frames = split_frames(blob)
    assert len(frames) == 10
    for after, got in enumerate(replays):
        assert got == b"".join(frames[after:]) + DONE, after
    assert (beyond.http_status, "is not an event of this interaction" in beyond.message) == (400, True)


def test_a_log_deleted_during_its_replay_cuts_the_response_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client must not take a partial log for a whole one: no [DONE], and no end of the body."""
    monkeypatch.setattr(replay, "PAGE_BYTES", 64)

    async def main() -> list[dict[str, object]]:
        service = scripted_service(tmp_path)
        await service.start()
        interaction_id = await _stored(service, SCRIPT)
        stream = await service.events(interaction_id, "o", None)
        first = await anext(stream)
        await service.delete(interaction_id, "o")
        sent: list[dict[str, object]] = []

        async def resumed() -> object:
            yield first
            async for chunk in stream:
                yield chunk

        async def receive() -> dict[str, object]:
            await asyncio.Event().wait()  # the client stays
            return {}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await EventStreamResponse(resumed())({"type": "http"}, receive, send)  # type: ignore[arg-type]
        await service.stop()
        return sent

    sent = asyncio.run(main())
    assert sent[0]["type"] == "http.response.start"
    assert [m["more_body"] for m in sent[1:]] == [True]  # the page read before the delete, and nothing after


def test_a_replay_that_finds_its_log_gone_raises_stream_cut() -> None:
    class Shrunk:
        async def events(self, interaction_id: str, offset: int = 0, size: int | None = None) -> bytes:
            return b"event: x\ndata: {}\n\n"[: (size or 0) // 2]

    async def main() -> None:
        with pytest.raises(StreamCut):
            await replay.stored_stream(Shrunk(), "i", 40, 0)  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_live_reader_far_behind_takes_bounded_chunks() -> None:
    """A reader that comes late to a long log (or whose client stalled) joins at most MAX_CHUNK_BYTES into one
    chunk, not a copy of everything it has not sent yet."""

    async def main() -> tuple[list[bytes], bytes]:
        log = MemoryEventLog(max_events=100_000, max_bytes=64 << 20)
        log.open("i")
        for _ in range(4 * MAX_CHUNK_BYTES // 60):
            await log.append("i", InteractionStatusUpdateEvent(interaction_id="i", status="in_progress"))
        log.close("i")
        return [chunk async for chunk in log.read("i")], log.contents("i")

    chunks, contents = asyncio.run(main())
    assert len(chunks) >= 4
    assert all(len(chunk) <= MAX_CHUNK_BYTES + len(DONE) for chunk in chunks)
    assert b"".join(chunks) == contents + DONE
    assert chunks[-1].endswith(DONE) and not any(chunk.endswith(DONE) for chunk in chunks[:-1])


def test_a_large_log_is_written_in_pieces_whole_and_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite takes a log over LARGE_LOG_BYTES from its frames through blob I/O (in the writer thread), after
    a committed insert or in the same batch as the insert."""
    monkeypatch.setattr(blobs, "LARGE_LOG_BYTES", 100)
    frames = [b'event: x\ndata: {"n":%d}\n\n' % n for n in range(50)]
    final = FinalState(status="completed", updated_at=2.0, steps="[]", usage=None, errors=None)

    def record(interaction_id: str) -> StoredInteraction:
        return StoredInteraction(id=interaction_id, owner="o", status="in_progress", created_at=1.0,
                                 updated_at=1.0, expires_at=4e9, request={}, input_steps="[]")  # fmt: skip

    async def main() -> list[tuple[str | None, bytes, int | None]]:
        store = sql.SqlStore(sqlite.sqlite_url(tmp_path))
        await store.start()
        await store.insert(record("after"))
        await store.finish("after", final, frames)
        await asyncio.gather(store.insert(record("together")), store.finish("together", final, frames))
        await store.finish("never-inserted", final, frames)  # as for a row deleted meanwhile: nothing written
        out = []
        for interaction_id in ("after", "together", "never-inserted"):
            got = await store.get(interaction_id, "o", 3.0)
            out.append(
                (
                    got and got.status,
                    await store.events(interaction_id),
                    await store.events_size(interaction_id, "o", 3.0),
                )
            )
        await store.close()
        return out

    after, together, missing = asyncio.run(main())
    whole = b"".join(frames)
    assert after == together == ("completed", whole, len(whole))
    assert missing == (None, b"", None)


@pytest.mark.parametrize("store", [True, False], ids=["stored", "store false"])
def test_a_reader_left_behind_by_a_finished_run_reads_the_rest_from_the_store(
    tmp_path: Path, store: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stopped reading used to keep its run's whole log in memory after the run was stored and
    forgotten. The log's frames are released then, and the reader goes on from the store where it was. A
    run with store false has nowhere else to go on from: its frames stay until its reader is done."""
    monkeypatch.setattr(log_module, "MAX_CHUNK_BYTES", 100)  # one frame a chunk: the reader stays behind

    async def main() -> tuple[list[bytes], bytes, bytes]:
        service = scripted_service(tmp_path)
        await service.start()
        run = await create(service, SCRIPT, store=store)
        held = service.log._logs[run.id]  # the log its readers hold
        stream = service.creation_stream(run)
        first = await anext(stream)  # one chunk, then the client stalls
        await until(lambda: run.id not in service.runs)
        left = held.frames
        rest = [chunk async for chunk in stream]
        whole = await service.store.events(run.id) if store else b"".join(left)
        await service.stop()
        return left, first + b"".join(rest), whole

    left, got, whole = asyncio.run(main())
    assert (left == []) is store
    assert len(split_frames(whole)) == 10
    assert got == whole + DONE
