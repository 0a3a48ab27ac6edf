"""A durable log holds events back from the store while its reader holds its next chunk back (coalescing), and
hands them over when the hold ends or before the run's result: fewer commits, and still no reader ever gets an
event before it is committed."""

from __future__ import annotations

import asyncio
import contextlib

from openinteractions.events.log import DONE, MemoryEventLog
from openinteractions.schema.events import StepDeltaEvent, StepStartEvent


class Store:
    """A sink that commits only when told to, reporting to the log as the real store does."""

    def __init__(self) -> None:
        self.queued: list[int] = []
        self.committed: list[int] = []
        self.log: MemoryEventLog | None = None

    def append_event(self, interaction_id: str, seq: int, frame: bytes) -> None:
        self.queued.append(seq)

    def commit(self) -> None:
        assert self.log is not None
        for seq in self.queued:
            self.committed.append(seq)
            self.log.committed("i", seq)
        self.queued.clear()


def delta(text: str) -> StepDeltaEvent:
    return StepDeltaEvent(index=0, delta={"type": "text", "text": text})


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_events_appended_during_a_hold_reach_the_store_when_it_ends_and_the_reader_once_committed() -> None:
    async def go() -> None:
        store = Store()
        log = store.log = MemoryEventLog(max_events=100, max_bytes=100_000, sink=store.append_event)
        log.open("i", durable=True)
        reader = log.read("i", 0, heartbeat=30, coalesce=0.05)
        pending = asyncio.ensure_future(anext(reader))
        await _settle()
        await log.append("i", StepStartEvent(index=0, step={"type": "model_output"}))
        await log.append("i", delta("a"))
        assert store.queued == [1, 2]  # the reader waits without a hold: at once
        await _settle()
        assert not pending.done()  # nothing committed, nothing read
        store.commit()
        first = await asyncio.wait_for(pending, 5)
        assert b'"text":"a"' in first
        pending = asyncio.ensure_future(anext(reader))  # holds: its chunk carried a delta
        await _settle()
        await log.append("i", delta("b"))
        await log.append("i", delta("c"))
        assert store.queued == []  # held back with the reader's chunk
        await asyncio.sleep(0.06)  # the hold is over: handed to the store, not yet read
        assert store.queued == [3, 4] and not pending.done()
        store.commit()
        burst = await asyncio.wait_for(pending, 5)
        assert b'"text":"b"' in burst and b'"text":"c"' in burst

    asyncio.run(go())


def test_a_second_reader_that_does_not_hold_gets_each_event_handed_over_at_once() -> None:
    async def go() -> None:
        store = Store()
        log = store.log = MemoryEventLog(max_events=100, max_bytes=100_000, sink=store.append_event)
        log.open("i", durable=True)
        holder = log.read("i", 0, heartbeat=30, coalesce=5)
        await log.append("i", delta("a"))
        store.commit()
        await asyncio.wait_for(anext(holder), 5)
        held = asyncio.ensure_future(anext(holder))  # holds for 5 s
        await _settle()
        await log.append("i", delta("b"))
        assert store.queued == []
        follower = log.read("i", 1, heartbeat=30)
        waiting = asyncio.ensure_future(anext(follower))
        await _settle()
        await log.append("i", delta("c"))
        assert store.queued == [2, 3]  # the follower waits without a hold: everything up to now goes
        store.commit()
        assert b'"text":"b"' in await asyncio.wait_for(waiting, 5)
        assert not held.done()
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held
        await follower.aclose()
        await holder.aclose()
        await log.append("i", delta("d"))
        assert store.queued == [4]  # no reader left

    asyncio.run(go())


def test_the_events_a_hold_kept_back_are_released_for_the_result_and_the_end_is_not_held() -> None:
    async def go() -> None:
        store = Store()
        log = store.log = MemoryEventLog(max_events=100, max_bytes=100_000, sink=store.append_event)
        log.open("i", durable=True)
        reader = log.read("i", 0, heartbeat=30, coalesce=5)
        await log.append("i", delta("a"))
        store.commit()
        await asyncio.wait_for(anext(reader), 5)
        pending = asyncio.ensure_future(anext(reader))
        await _settle()
        await log.append("i", delta("b"))
        await log.append("i", delta("c"))
        assert store.queued == []
        log.release("i")  # what a run does before it writes its result
        assert store.queued == [2, 3]
        store.commit()
        log.close("i")
        end = await asyncio.wait_for(pending, 1)  # the close ends the hold
        assert b'"text":"b"' in end and b'"text":"c"' in end and end.endswith(DONE)

    asyncio.run(go())


def test_without_readers_each_event_is_handed_over_at_once() -> None:
    async def go() -> None:
        store = Store()
        log = store.log = MemoryEventLog(max_events=100, max_bytes=100_000, sink=store.append_event)
        log.open("i", durable=True)
        for text in "abc":
            await log.append("i", delta(text))
        assert store.queued == [1, 2, 3]
        store.commit()
        reader = log.read("i", 0, heartbeat=30, coalesce=5)
        await asyncio.wait_for(anext(reader), 5)  # started, then closed: it no longer counts
        await reader.aclose()
        await log.append("i", delta("d"))
        assert store.queued == [4]

    asyncio.run(go())
