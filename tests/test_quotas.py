"""Per-key quotas and limits: stored bytes, creates per second, runs at once, and the bytes a chain may load.

Storage quotas are 400 FAILED_PRECONDITION (a retry cannot fix them); the rate and concurrency limits are 429
RESOURCE_EXHAUSTED with Retry-After (a retry can). The google-genai SDK carries the happy paths and, with its
retries on, waits out a rate limit on its own; the 429s themselves are checked with httpx.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai._interactions import BadRequestError
from sqlalchemy import Column, Float, Index, LargeBinary, MetaData, String, Table, Text, create_engine, insert

import pg
from live import LiveServer
from openinteractions.engine.ratelimit import TokenBuckets
from openinteractions.store.base import ChainTooBig, FinalState, StoredInteraction
from openinteractions.store.sql import SqlStore
from openinteractions.store.sqlite import sqlite_url

MODEL = "gemini-3-flash-preview"
ALICE, BOB, CAROL = "alice-key-0001", "bob-key-00002", "carol-key-003"
SCRIPTED = {f"models.{MODEL}": {"backend": "scripted", "inline": True}}


def script(*events: dict[str, Any]) -> str:
    return json.dumps({"script": list(events)})


def padded(size: int) -> str:
    """An inline script that answers "ok", then ``size`` bytes of text."""
    return script({"text": "ok"}) + " " + "x" * size


def sdk(server: LiveServer, key: str, **http_options: Any) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": server.url, **http_options})


def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """A short pause between tries: a loop of requests without one takes the CPU from the server it waits on."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def serve(tmp_path_factory: pytest.TempPathFactory, name: str, **sections: dict[str, Any]) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp(name), {"auth": {"api_keys": [ALICE, BOB, CAROL]}, **SCRIPTED, **sections}
    ).start()
    yield server
    server.stop()


# ---- stored bytes --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(
        tmp_path_factory,
        "stored",
        store={"max_bytes_per_owner": 300_000},
        limits={"max_chain_bytes": 100_000, "create_rate_per_second": 0},
    )


def test_a_key_over_its_stored_bytes_is_refused_until_it_deletes(stored: LiveServer) -> None:
    alice = sdk(stored, ALICE)
    # Each row keeps its 60 kB input twice (as sent and as steps): two fit in 300 kB, a third does not.
    first = alice.interactions.create(model=MODEL, input=padded(60_000))
    alice.interactions.create(model=MODEL, input=padded(60_000))
    with pytest.raises(BadRequestError) as refused:
        alice.interactions.create(model=MODEL, input=padded(60_000))
    assert "FAILED_PRECONDITION" in str(refused.value) and "store.max_bytes_per_owner" in str(refused.value)
    assert alice.interactions.create(model=MODEL, input=padded(60_000), store=False).status == "completed"
    # Another key's quota is its own.
    assert sdk(stored, BOB).interactions.create(model=MODEL, input=padded(60_000)).status == "completed"
    alice.interactions.delete(first.id)
    assert alice.interactions.create(model=MODEL, input=padded(60_000)).status == "completed"
    with pytest.raises(BadRequestError):
        alice.interactions.create(model=MODEL, input=padded(60_000))


def test_one_input_larger_than_the_quota_is_refused_before_it_runs(stored: LiveServer) -> None:
    with stored.http(headers={"x-goog-api-key": CAROL}) as http:
        refused = http.post("/v1beta/interactions", json={"model": MODEL, "input": padded(200_000)})
    assert refused.status_code == 400
    assert refused.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert "store.max_bytes_per_owner" in refused.json()["error"]["message"]


def test_every_stored_request_field_counts_not_just_the_input(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The row keeps the system instruction once (the echoed request; the run's recipe leaves out what that
    # holds): ~150 kB a create.
    for server in serve(tmp_path_factory, "fields", store={"max_bytes_per_owner": 250_000}):
        with server.http(headers={"x-goog-api-key": ALICE}) as http:
            body = {"model": MODEL, "input": script({"text": "hi"}), "system_instruction": "x" * 150_000}
            assert http.post("/v1beta/interactions", json=body).status_code == 200
            refused = http.post("/v1beta/interactions", json=body)
        assert refused.status_code == 400 and "store.max_bytes_per_owner" in refused.json()["error"]["message"]


def test_a_chain_that_stores_more_than_max_chain_bytes_is_refused(stored: LiveServer) -> None:
    carol = sdk(stored, CAROL)
    first = carol.interactions.create(model=MODEL, input=padded(35_000))  # ~70 kB stored
    second = carol.interactions.create(model=MODEL, input=padded(20_000), previous_interaction_id=first.id)
    with pytest.raises(BadRequestError) as refused:
        carol.interactions.create(model=MODEL, input=script({"text": "more"}), previous_interaction_id=second.id)
    assert "limits.max_chain_bytes" in str(refused.value) and "100000 bytes" in str(refused.value)
    # Under the bound, the same chain goes on.
    assert carol.interactions.create(model=MODEL, input=script({"text": "on"}), previous_interaction_id=first.id)


# ---- creates per second --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(tmp_path_factory, "rated", limits={"create_rate_per_second": 4, "create_burst": 2})


def _create(http: httpx.Client, key: str) -> httpx.Response:
    body = {"model": MODEL, "input": script({"text": "hi"}), "store": False}
    return http.post("/v1beta/interactions", json=body, headers={"x-goog-api-key": key})


def test_a_key_over_its_rate_gets_429_with_retry_after_and_gets_in_once_it_waits(rated: LiveServer) -> None:
    with rated.http() as http:
        assert [_create(http, ALICE).status_code for _ in range(2)] == [200, 200]  # the burst
        tries = 0
        while (refused := _create(http, ALICE)).status_code == 200:  # on a slow machine, a token came back
            tries += 1
            assert tries < 10
        assert refused.status_code == 429
        assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert "limits.create_rate_per_second" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        assert 1 <= int(refused.headers["retry-after-ms"]) <= 250
        assert _create(http, BOB).status_code == 200  # another key has its own bucket
        until(lambda: _create(http, ALICE).status_code == 200, seconds=5)


def test_the_sdk_waits_out_the_rate_limit_by_itself(rated: LiveServer) -> None:
    carol = sdk(rated, CAROL)
    started = time.monotonic()
    for _ in range(4):  # two from the burst, then one every 0.25 s: the SDK retries after retry-after-ms
        assert carol.interactions.create(model=MODEL, input=script({"text": "hi"}), store=False).status == "completed"
    assert time.monotonic() - started >= 0.4


# ---- runs at once --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(tmp_path_factory, "busy", limits={"max_concurrent_runs": 2, "create_rate_per_second": 0})


def _hang(http: httpx.Client, key: str) -> httpx.Response:
    body = {"model": MODEL, "input": script({"hang": True}), "background": True}
    return http.post("/v1beta/interactions", json=body, headers={"x-goog-api-key": key})


def test_a_key_with_max_concurrent_runs_running_gets_429_until_one_ends(busy: LiveServer) -> None:
    with busy.http() as http:
        first = _hang(http, ALICE).json()
        assert first["status"] == "in_progress"
        for _ in range(3):  # refused creates give their slot back
            bad = http.post("/v1beta/interactions", json={"model": MODEL}, headers={"x-goog-api-key": ALICE})
            assert bad.status_code == 400
        assert _hang(http, ALICE).json()["status"] == "in_progress"
        refused = _hang(http, ALICE)
        assert refused.status_code == 429
        assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert "limits.max_concurrent_runs" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        other = _hang(http, BOB)
        assert other.status_code == 200  # another key has its own slots
        cancelled = http.post(f"/v1beta/interactions/{first['id']}/cancel", headers={"x-goog-api-key": ALICE})
        assert cancelled.json()["status"] == "cancelled"
        third: list[httpx.Response] = []
        until(lambda: third.append(_hang(http, ALICE)) or third[-1].status_code == 200)
        assert third[-1].json()["status"] == "in_progress"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # A rate that refills once a minute: a spent token stays spent for the whole test.
    limits = {"max_concurrent_runs": 1, "create_rate_per_second": 1 / 60, "create_burst": 2}
    yield from serve(tmp_path_factory, "full", limits=limits)


def test_creates_refused_for_want_of_a_slot_spend_no_rate_token(full: LiveServer) -> None:
    with full.http() as http:
        first = _hang(http, ALICE).json()  # token 1 of 2, the only slot
        for _ in range(5):  # the SDKs retry a 429 four times
            refused = _hang(http, ALICE)
            assert "limits.max_concurrent_runs" in refused.json()["error"]["message"]
        http.post(f"/v1beta/interactions/{first['id']}/cancel", headers={"x-goog-api-key": ALICE})
        second: list[httpx.Response] = []
        until(lambda: second.append(_hang(http, ALICE)) or second[-1].status_code != 429 or "rate" in second[-1].text)
        assert second[-1].status_code == 200, second[-1].text  # token 2 was still there


# ---- the store: the size column, the chain bound, and databases made before them ------------------------


def _record(interaction_id: str, prev: str | None = None, text: str = "") -> StoredInteraction:
    steps = json.dumps([{"text": text}], ensure_ascii=False)
    return StoredInteraction(
        id=interaction_id, owner="o", status="in_progress", created_at=1.0, updated_at=1.0, expires_at=4e9,
        previous_interaction_id=prev, request={"input": text}, input_steps=steps,
    )  # fmt: skip


def test_the_store_sums_sizes_and_refuses_a_chain_over_its_bound_before_reading_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqlStore(sqlite_url(tmp_path))
        await store.start()
        await store.insert(_record("a", text="é" * 1000))  # 2 bytes each in UTF-8
        await store.insert(_record("b", prev="a", text="x" * 1000))
        rows, size = await store.usage("o", 2.0)
        assert rows == 2 and 6000 < size < 6100
        assert [r.id for r in await store.chain("b", "o", 2.0, 10, max_bytes=size)] == ["a", "b"]
        with pytest.raises(ChainTooBig):
            await store.chain("b", "o", 2.0, 10, max_bytes=size - 1)
        await store.finish("b", FinalState("completed", 2.0, '["done"]', None, None), b"event: x\n\n")
        assert (await store.usage("o", 2.0))[1] == size + len('["done"]') + len(b"event: x\n\n")
        assert await store.usage("someone else", 2.0) == (0, 0)
        await store.close()

    asyncio.run(scenario())


def _old_table() -> tuple[MetaData, Table]:
    """The table as it was before the size column."""
    metadata = MetaData()
    table = Table(
        "interactions", metadata,
        Column("id", String(64), primary_key=True), Column("owner", String(128), nullable=False),
        Column("status", String(32), nullable=False), Column("model", String(256)), Column("agent", String(256)),
        Column("previous_interaction_id", String(64)), Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False), Column("expires_at", Float, nullable=False),
        Column("request", Text, nullable=False), Column("input_steps", Text, nullable=False),
        Column("steps", Text, nullable=False), Column("usage", Text), Column("errors", Text),
        Column("events", LargeBinary),
        Index("ix_interactions_owner_created", "owner", "created_at"), Index("ix_interactions_expires", "expires_at"),
    )  # fmt: skip
    return metadata, table


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with pg.scratch_database() as name:
        yield pg.url(name)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_database_made_before_the_size_column_gets_it_filled_in_at_start(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url(tmp_path, exclusive=False) if database == "sqlite" else request.getfixturevalue("postgres_url")
    metadata, table = _old_table()
    engine = create_engine(url)
    metadata.create_all(engine)
    row = {"id": "old", "owner": "o", "status": "completed", "created_at": 1.0, "updated_at": 1.0,
           "expires_at": 4e9, "request": '{"input":"é"}', "input_steps": "[]", "steps": '["s"]',
           "usage": None, "errors": None, "events": b"event: x\n\n"}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(table), row)
    engine.dispose()

    async def scenario() -> None:
        store = SqlStore(url)
        await store.start()
        assert await store.usage("o", 2.0) == (1, 14 + 2 + 5 + 10)  # 'é' is two bytes
        await store.insert(_record("new", prev="old", text="x"))
        assert [r.id for r in await store.chain("new", "o", 2.0, 10, max_bytes=10_000)] == ["old", "new"]
        await store.close()
        again = SqlStore(url)
        await again.start()  # a second start finds the column there
        assert (await again.usage("o", 2.0))[0] == 2
        await again.close()

    asyncio.run(scenario())


def test_token_buckets_allow_a_burst_then_the_rate_and_say_how_long_to_wait() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)
    assert buckets.take("other") == 0.0
    now[0] = 0.25
    assert buckets.take("k") == pytest.approx(0.25)  # refused requests take nothing
    now[0] = 0.5
    assert buckets.take("k") == 0.0
    now[0] = 100.0
    assert [buckets.take("k") for _ in range(4)][-1] == pytest.approx(0.5)  # never more than the burst
    assert TokenBuckets(rate=0, burst=1).take("k") == 0.0  # off


def test_a_stored_result_does_not_write_its_input_to_the_wal_a_third_time(tmp_path: Path) -> None:
    """The result rewrites the row, its input with it; Debian's SQLite also zeroed the old copy (secure_delete),
    so 1 MiB stored twice (as sent and as steps) cost 6 MiB of WAL; now 4."""

    async def scenario() -> int:
        store = SqlStore(sqlite_url(tmp_path))
        await store.start()
        wal = tmp_path / "openinteractions.db-wal"
        before = wal.stat().st_size
        await store.insert(_record("a", text="x" * 2**20))
        await store.finish("a", FinalState("completed", 2.0, "[]", None, None), b"event: x\n\n")
        written = wal.stat().st_size - before
        await store.close()
        return written

    assert asyncio.run(scenario()) < 5 * 2**20
