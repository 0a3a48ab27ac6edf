"""Unit tests of the pieces whose edge cases are cheaper to reach directly: store retention, signatures,
input shapes, the assembler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from openinteractions.engine.assembler import Assembler
from openinteractions.engine.signatures import InvalidSignature, ThoughtSigner, candidate_key
from openinteractions.schema.events import ChunkEvent, StepDeltaEvent, StepStartEvent
from openinteractions.schema.requests import InputShapeError, normalize_input
from openinteractions.store import sql as sql_module
from openinteractions.store.base import BrokenChain, FinalState, StoredInteraction
from openinteractions.store.sql import SqlStore
from openinteractions.store.sqlite import sqlite_url


def record(id: str, owner: str = "o", prev: str | None = None, created: float = 100.0, ttl: float = 50.0):
    return StoredInteraction(
        id=id,
        owner=owner,
        status="in_progress",
        created_at=created,
        updated_at=created,
        expires_at=created + ttl,
        model="m",
        previous_interaction_id=prev,
        request={},
    )


def test_store_retention_chain_and_ownership(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqlStore(sqlite_url(tmp_path))
        await store.start()
        await store.insert(record("a"))
        await store.insert(record("b", prev="a", created=120))
        await store.insert(record("c", prev="b", created=140))
        final = FinalState("completed", 101, '[{"type":"model_output"}]', None, None)
        await store.finish("a", final, b'event: step.stop\ndata: {"index":0}\n\n')
        assert await store.events("a") == b'event: step.stop\ndata: {"index":0}\n\n'
        assert [r.id for r in await store.chain("c", "o", now=145, limit=10)] == ["a", "b", "c"]
        assert await store.chain("c", "someone-else", now=145, limit=10) == []
        assert (await store.get("a", "o", now=149)).steps == '[{"type":"model_output"}]'
        assert await store.get("a", "o", now=150) is None  # expired exactly at created + ttl
        with pytest.raises(BrokenChain) as broken:
            await store.chain("c", "o", now=160, limit=10)
        assert broken.value.missing_id == "a"
        assert await store.count("o", now=160) == 2
        assert await store.sweep(now=160) == 1
        assert await store.events("a") == b""
        assert await store.delete("b", "other") is False
        assert await store.delete("b", "o") is True
        assert await store.live_events({"c": 0}) == {"c": []}  # unfinished, nothing logged
        await store.close()

    asyncio.run(scenario())


def test_signatures_are_tamper_evident(tmp_path: Path) -> None:
    (tmp_path / "signing.key").write_text("an earlier version's key\n")
    assert candidate_key(tmp_path) == "an earlier version's key"  # kept in the database from then on
    signer = ThoughtSigner(candidate_key(tmp_path / "none").encode())
    signature = signer.sign("I think, therefore")
    assert signer.open(signature) == "I think, therefore"
    for forged in (signature[:-2] + "AA", "bm90IGEgc2lnbmF0dXJl", "###", ThoughtSigner(b"x" * 32).sign("hi")):
        with pytest.raises(InvalidSignature):
            signer.open(forged)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("hi", [{"type": "user_input", "content": [{"type": "text", "text": "hi"}]}]),
        ({"type": "text", "text": "hi"}, [{"type": "user_input", "content": [{"type": "text", "text": "hi"}]}]),
        (
            [{"text": "a"}, {"type": "text", "text": "b"}],
            [{"type": "user_input", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        ),
        (
            [{"type": "function_result", "call_id": "c", "result": "r"}],
            [{"type": "function_result", "call_id": "c", "result": "r"}],
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "model", "content": [{"text": "a"}]}],
            [
                {"type": "user_input", "content": [{"type": "text", "text": "q"}]},
                {"type": "model_output", "content": [{"type": "text", "text": "a"}]},
            ],
        ),
    ],
)
def test_input_shapes(raw: object, expected: list[dict[str, object]]) -> None:
    assert [step.wire() for step in normalize_input(raw)] == expected


@pytest.mark.parametrize("raw", [5, [1], [{"type": "user_input"}, {"text": "x"}], [{"type": "nope"}]])
def test_bad_input_shapes(raw: object) -> None:
    with pytest.raises((InputShapeError, ValidationError)):
        normalize_input(raw)


def test_assembler_builds_blocks_from_deltas() -> None:
    assembler = Assembler()
    events = [
        StepStartEvent(index=0, step={"type": "model_output"}),
        StepDeltaEvent(index=0, delta={"type": "text", "text": "Hel"}),
        StepDeltaEvent(index=0, delta={"type": "text", "text": "lo"}),
        StepDeltaEvent(
            index=0,
            delta={
                "type": "text_annotation_delta",
                "annotations": [{"type": "url_citation", "url": "http://x", "start_index": 0, "end_index": 5}],
            },
        ),
        StepDeltaEvent(index=0, delta={"type": "image", "mime_type": "image/png", "data": "AAAA"}),
        StepDeltaEvent(index=0, delta={"type": "text", "text": "after"}),
        StepStartEvent(index=1, step={"type": "function_call", "id": "c1", "name": "f", "arguments": {}}),
        StepDeltaEvent(index=1, delta={"type": "arguments_delta", "arguments": '{"a": '}),
        StepDeltaEvent(index=1, delta={"type": "arguments_delta", "arguments": "[1, 2]}"}),
    ]
    for event in events:
        assembler.apply(event)
    assert json.loads(json.dumps(assembler.steps())) == [
        {
            "type": "model_output",
            "content": [
                {
                    "type": "text",
                    "text": "Hello",
                    "annotations": [{"type": "url_citation", "url": "http://x", "start_index": 0, "end_index": 5}],
                },
                {"type": "image", "data": "AAAA", "mime_type": "image/png"},
                {"type": "text", "text": "after"},
            ],
        },
        {"type": "function_call", "id": "c1", "name": "f", "arguments": {"a": [1, 2]}},
    ]


@pytest.mark.parametrize(
    ("fragments", "kept"),
    [([" "], {}), (['{"a": ', "1}"], {"a": 1}), (['{"a": '], None), (["[1]"], None), (['"x"'], None)],
    ids=["blank is no arguments", "complete", "cut off", "an array", "a string"],
)
def test_a_call_is_assembled_exactly_when_the_step_writer_accepts_its_arguments(
    fragments: list[str], kept: dict[str, int] | None
) -> None:
    """Anything else would be a step the resource cannot hold (a 500 on every read) or one the run never made."""
    assembler = Assembler()
    assembler.apply(StepStartEvent(index=0, step={"type": "function_call", "id": "c1", "name": "f", "arguments": {}}))
    for fragment in fragments:
        assembler.apply(StepDeltaEvent(index=0, delta={"type": "arguments_delta", "arguments": fragment}))
    expected = [] if kept is None else [{"type": "function_call", "id": "c1", "name": "f", "arguments": kept}]
    assert assembler.steps() == expected


@given(
    value=st.text(st.characters(blacklist_categories=("Cs",))),
    index=st.integers(0, 10_000),
    kind=st.sampled_from(["text", "arguments_delta", "thought_summary"]),
    seq=st.integers(1, 10**9),
)
def test_hand_encoded_chunks_match_the_model_byte_for_byte(value: str, index: int, kind: str, seq: int) -> None:
    chunk = ChunkEvent(index, kind, value, str(seq))  # type: ignore[arg-type]
    assert chunk.encode() == chunk.to_model().encode()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openinteractions.config import load_settings

    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = 9000\nkeepalive_seconds = 5\n[auth]\napi_keys = ["file-key-123"]\n')
    monkeypatch.setenv("OPENINTERACTIONS_SERVER__PORT", "9100")
    monkeypatch.setenv("OPENINTERACTIONS_TOOLS__CODE_EXECUTION__ENABLED", "false")
    settings = load_settings(config)
    assert settings.server.port == 9100 and settings.server.keepalive_seconds == 5
    assert settings.auth.api_keys == ["file-key-123"] and settings.tools.code_execution.enabled is False
    monkeypatch.setenv("OPENINTERACTIONS_SERVER__PORT", "70000")
    with pytest.raises(ValidationError):
        load_settings(config)


def test_an_open_server_refuses_a_public_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "c.toml"
    config.write_text(f'[store]\ndata_dir = "{tmp_path}"\n[models.m]\nbackend = "scripted"\n')
    result = subprocess.run(
        [sys.executable, "-m", "openinteractions", "serve", "--config", str(config), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "refusing to serve 0.0.0.0 without API keys" in result.stderr


def test_owner_usage_is_summed_one_query_at_a_time_and_refreshed_in_the_background() -> None:
    from openinteractions.engine.quota import OwnerUsage, Usage

    async def scenario() -> None:
        queries: list[float] = []
        release = asyncio.Event()

        async def count(owner: str, now: float) -> Usage:
            queries.append(now)
            await release.wait()
            return Usage(10 * len(queries), 1000 * len(queries))

        counts = OwnerUsage(count, refresh_seconds=5.0)
        first = [asyncio.create_task(counts.get("k", 0.0)) for _ in range(50)]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*first) == [(10, 1000)] * 50 and len(queries) == 1  # fifty waiters, one scan
        counts.added("k", 5)
        assert await counts.get("k", 4.0) == (11, 1005) and len(queries) == 1  # fresh: no query
        release.clear()
        stale = await asyncio.gather(*(counts.get("k", 6.0) for _ in range(50)))
        assert stale == [(11, 1005)] * 50 and len(queries) == 2  # stale: answered at once, one refresh begun
        release.set()
        await asyncio.sleep(0.01)
        assert await counts.get("k", 7.0) == (20, 2000)
        release.clear()
        refresh = counts._load("k", 20.0)
        counts.forget("k")  # a delete while a count is under way: that count is dropped
        release.set()
        await refresh
        assert "k" not in counts._known

    asyncio.run(scenario())


def test_a_failing_write_batch_is_retried_one_by_one_and_the_store_goes_on(tmp_path: Path) -> None:
    from openinteractions.store.base import FinalState, StoredInteraction
    from openinteractions.store.sql import SqlStore
    from openinteractions.store.sqlite import sqlite_url

    def record(interaction_id: str) -> StoredInteraction:
        return StoredInteraction(
            id=interaction_id, owner="o", status="in_progress", model="m", previous_interaction_id=None,
            created_at=1.0, updated_at=1.0, expires_at=4e9, request={"model": "m"}, input_steps="[]",
        )  # fmt: skip

    async def scenario() -> None:
        store = SqlStore(sqlite_url(tmp_path))
        await store.start()
        await store.insert(record("taken"))
        # Queued together, so they go in one batch: the duplicate fails it, and each is then tried alone.
        duplicate, fresh = store.insert(record("taken")), store.insert(record("fresh"))
        results = await asyncio.gather(duplicate, fresh, return_exceptions=True)
        assert isinstance(results[0], Exception) and results[1] is None
        final = FinalState(status="completed", updated_at=2.0, steps="[]", usage=None, errors=None)
        await store.finish("fresh", final, b"event: x\n\n")
        stored = await store.get("fresh", "o", 2.0)
        assert stored is not None and stored.status == "completed"
        assert await store.events("fresh") == b"event: x\n\n"
        await store.close()

    asyncio.run(scenario())


def _stored_record(interaction_id: str) -> StoredInteraction:
    return StoredInteraction(
        id=interaction_id, owner="o", status="in_progress", model="m", previous_interaction_id=None,
        created_at=1.0, updated_at=1.0, expires_at=4e9, request={"model": "m"}, input_steps="[]",
    )  # fmt: skip


def test_sqlite_writes_commit_on_the_loop_and_go_to_the_writer_thread_while_the_file_is_locked(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = SqlStore(sqlite_url(tmp_path))
        await store.start()
        in_thread: list[int] = []
        write_batch = store._write_batch
        store._write_batch = lambda batch: (in_thread.append(len(batch)), write_batch(batch))[1]  # type: ignore[method-assign]
        await store.insert(_stored_record("a"))
        assert in_thread == []  # committed on the loop's thread
        other = sqlite3.connect(tmp_path / "openinteractions.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        pending = store.insert(_stored_record("b"))
        for _ in range(100):
            if store._thread_jobs:
                break
            await asyncio.sleep(0)
        assert store._thread_jobs == 1 and not pending.done()  # waiting in the thread, not failed
        other.execute("ROLLBACK")
        await pending
        assert in_thread == [1]
        assert await store.get("b", "o", 2.0) is not None and await store.get("a", "o", 2.0) is not None
        other.close()
        await store.close()

    asyncio.run(scenario())


def test_the_last_running_interaction_commits_its_result_at_once_others_share_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    commit = sql_module.commit
    monkeypatch.setattr(
        sql_module,
        "commit",
        lambda raw, mark, batch, *rest, **kw: (commits.append(len(batch)), commit(raw, mark, batch, *rest, **kw))[1],
    )

    async def scenario() -> None:
        store = SqlStore(sqlite_url(tmp_path))
        await store.start()
        await asyncio.gather(store.insert(_stored_record("a")), store.insert(_stored_record("b")))
        final = FinalState(status="completed", updated_at=2.0, steps="[]", usage=None, errors=None)
        first = store.finish("a", final, b"event: a\n\n")
        assert not first.done()  # "b" is still running: queued for the writer's next batch
        last = store.finish("b", final, b"event: b\n\n")
        assert first.done() and last.done()  # nothing else can join: committed now, "a" with it
        assert commits == [2, 2]  # the two inserts in one batch, the two results in another
        for name in "ab":
            stored = await store.get(name, "o", 2.0)
            assert stored is not None and stored.status == "completed"
        await store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("every", [4, 10_000])
def test_wal_checkpoints_run_in_the_writer_thread_every_so_many_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    from openinteractions.store import sql

    monkeypatch.setattr(sql, "_CHECKPOINT_EVERY", every)

    async def scenario() -> None:
        store = sql.SqlStore(sqlite_url(tmp_path))
        await store.start()
        for name in "abcd":
            await store.insert(_stored_record(name))
        if store._checkpointing is not None:
            await store._checkpointing
        # Only the database file, without its WAL: what a checkpoint has copied there.
        shutil.copy(tmp_path / "openinteractions.db", tmp_path / "main-only.db")
        with contextlib.closing(sqlite3.connect(tmp_path / "main-only.db")) as copy:
            tables = {name for (name,) in copy.execute("SELECT name FROM sqlite_master")}
            rows = copy.execute("SELECT count(*) FROM interactions").fetchone()[0] if "interactions" in tables else 0
        assert rows == (4 if every == 4 else 0)  # no checkpoint on its own: SQLite's automatic ones are off
        await store.close()

    asyncio.run(scenario())


def test_input_tokens_are_split_by_modality_only_when_the_split_is_known() -> None:
    from openinteractions.backends.base import UsageReport
    from openinteractions.engine.run import _all_text, usage_model
    from openinteractions.schema.requests import normalize_input

    report = UsageReport(input_tokens=12, output_tokens=3)
    text = normalize_input("hello")
    image = normalize_input([{"type": "text", "text": "what is this?"}, {"type": "image", "uri": "https://x/y.png"}])
    assert _all_text(text) and not _all_text(image)
    by_modality = usage_model(report, _all_text(text)).input_tokens_by_modality  # type: ignore[union-attr]
    assert [(m.modality, m.tokens) for m in by_modality or []] == [("text", 12)]
    assert usage_model(report, _all_text(image)).input_tokens_by_modality is None  # type: ignore[union-attr]


def test_a_stream_response_closes_its_frames_when_it_ends() -> None:
    """Left suspended after its last frame, the generator would be closed by the garbage collector through a
    thread-safe callback: an extra wake-up of the event loop for every stream."""
    from openinteractions.api.sse import EventStreamResponse
    from openinteractions.events.log import DONE

    async def frames():  # type: ignore[no-untyped-def]
        yield b"event: interaction.created\ndata: {}\n\n" + DONE
        yield b"never read"

    async def scenario() -> None:
        generator = frames()
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            await asyncio.Event().wait()  # the client stays
            return {}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await EventStreamResponse(generator, headers_with_first_events=True)({"type": "http"}, receive, send)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert sent[-1]["more_body"] is False
        assert generator.ag_frame is None  # closed by the response, not left for the finalizer

    asyncio.run(scenario())


def test_an_idle_log_reader_gets_a_heartbeat_then_the_events_and_done() -> None:
    from openinteractions.events.log import DONE, MemoryEventLog

    async def go() -> list[bytes]:
        log = MemoryEventLog(max_events=10, max_bytes=10_000)
        log.open("i")
        reader = log.read("i", 0, heartbeat=0.02)
        got = [await asyncio.wait_for(anext(reader), 5)]  # nothing appended: the heartbeat's empty chunk
        pending = asyncio.ensure_future(anext(reader))
        await log.append("i", StepDeltaEvent(index=0, delta={"type": "text", "text": "a"}))
        got.append(await pending)
        log.close("i")
        got += [chunk async for chunk in reader]
        return got

    heartbeat, event, done = asyncio.run(go())
    assert heartbeat == b""
    assert event.startswith(b"event: step.delta\ndata: {") and b'"event_id":"1"' in event
    assert done == DONE


def test_a_burst_of_deltas_after_the_first_goes_out_as_one_chunk_and_the_end_is_never_held() -> None:
    from openinteractions.events.log import DONE, MemoryEventLog
    from openinteractions.schema.events import StepStartEvent

    def delta(text: str) -> StepDeltaEvent:
        return StepDeltaEvent(index=0, delta={"type": "text", "text": text})

    async def go() -> tuple[list[bytes], float, float]:
        loop = asyncio.get_running_loop()
        log = MemoryEventLog(max_events=20, max_bytes=10_000)
        log.open("i")
        reader = log.read("i", 0, heartbeat=30, coalesce=0.05)
        await log.append("i", StepStartEvent(index=0, step={"type": "model_output"}))
        got = [await anext(reader)]  # no content yet: at once
        await log.append("i", delta("a"))
        got.append(await anext(reader))  # the first content: at once
        sent = loop.time()
        await log.append("i", delta("b"))
        await log.append("i", delta("c"))
        got.append(await anext(reader))  # held until the interval is over, then both together
        waited = loop.time() - sent
        await log.append("i", delta("d"))
        pending = asyncio.ensure_future(anext(reader))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not pending.done()  # held again...
        log.close("i")
        got.append(await pending)  # ...but not past the end
        return got, waited, loop.time() - sent

    (start, first, burst, end), waited, total = asyncio.run(go())
    assert b"step.start" in start and b"step.delta" not in start
    assert first.count(b"event: step.delta") == 1 and b'"text":"a"' in first
    assert burst.count(b"event: step.delta") == 2 and b'"text":"b"' in burst and b'"text":"c"' in burst
    assert waited >= 0.045
    assert end.endswith(DONE) and b'"text":"d"' in end and total < waited + 0.045


def test_a_held_reader_waits_for_the_clock_instead_of_spinning_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop's clock and timers count whole milliseconds: a hold that armed a sub-millisecond timer woke up
    ~100 times per held chunk, each time to find the clock unchanged."""
    import uvloop

    from openinteractions.events import log as event_log

    waits = 0
    wait = event_log._wait

    async def counted(*args: object) -> bool:
        nonlocal waits
        waits += 1
        return await wait(*args)

    monkeypatch.setattr(event_log, "_wait", counted)

    async def go() -> None:
        log = event_log.MemoryEventLog(max_events=1000, max_bytes=10**7)
        log.open("i")
        reader = log.read("i", 0, heartbeat=30, coalesce=0.002)
        for _ in range(20):
            await log.append("i", StepDeltaEvent(index=0, delta={"type": "text", "text": "a"}))
            await anext(reader)  # held from the second on: the previous chunk carried a delta

    uvloop.run(go())
    assert waits <= 2 * 20


def test_a_response_head_goes_out_with_the_first_body_bytes() -> None:
    from openinteractions.api.protocol import HeadHoldingTransport

    class Wire:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            assert not self.closed
            self.writes.append(data)

        def close(self) -> None:
            self.closed = True

        def is_closing(self) -> bool:
            return self.closed

    async def go() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        seen = []
        wire = Wire()
        transport = HeadHoldingTransport(wire, loop)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"5\r\nhello\r\n")
        transport.write(b"0\r\n\r\n")
        seen.append(wire.writes)
        wire = Wire()
        transport = HeadHoldingTransport(wire, loop)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")  # and nothing more this iteration
        assert wire.writes == []
        await asyncio.sleep(0)  # the end of the iteration (the flush is scheduled, not timed)
        seen.append(wire.writes)
        wire = Wire()
        transport = HeadHoldingTransport(wire, loop)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
        transport.close()
        seen.append([*wire.writes, b"closed" if transport.is_closing() else b"open"])
        return seen

    together, alone, closed = asyncio.run(go())
    assert together == [b"HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n", b"0\r\n\r\n"]
    assert alone == [b"HTTP/1.1 200 OK\r\n\r\n"]
    assert closed == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n", b"closed"]


@pytest.mark.parametrize("exclusive", [True, False])
def test_the_sqlite_file_lands_in_a_data_dir_whose_name_has_uri_characters(tmp_path: Path, exclusive: bool) -> None:
    data_dir = tmp_path / "odd #?% name é"
    data_dir.mkdir()

    async def scenario() -> None:
        store = SqlStore(sqlite_url(data_dir, exclusive))
        await store.start()
        await store.insert(_stored_record("a"))
        assert await store.get("a", "o", 2.0) is not None
        await store.close()

    asyncio.run(scenario())
    assert (data_dir / "openinteractions.db").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [data_dir.name]  # nothing created beside it


def test_compact_json_reads_back_as_the_standard_library_would_write_it() -> None:
    from openinteractions import jsontext

    values = [
        {"text": "héllo ✓", "n": 1, "f": 0.1, "nested": [{"a": None, "b": True}]},
        {"big": 2**70},  # beyond orjson's 64 bits: the standard library writes it
        {1: "non-string key"},  # orjson refuses it; json writes "1"
        {"lone": "\ud800"},  # a lone surrogate: orjson refuses it
    ]
    for value in values:
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        assert json.loads(jsontext.dumps(value)) == json.loads(expected)
        assert jsontext.dumps_bytes(value).decode("utf-8", "surrogatepass") == jsontext.dumps(value)
    assert jsontext.dumps({"t": "é"}) == '{"t":"é"}'  # UTF-8 as it is, compact
