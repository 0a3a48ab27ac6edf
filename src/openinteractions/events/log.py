"""The event log: the only channel between a run and its readers.

A run appends events; SSE responses, the store and the assembler read them. Event ids are assigned here and
nowhere else: the n-th event of an interaction has ``event_id`` ``str(n)``, starting at 1. Each event is
serialised once, at append, into the exact SSE frame every reader sends.

The log of a stored interaction is durable: each append is handed to the store's events table (``sink``, group
committed with every other write) and readers see an event only once the store reports it committed, so no
client ever receives an event that a crash could lose. The frames kept here are the cache readers are served
from; the table is the truth a run continues from after a crash. A ``store: false`` log is memory only, and
its events are visible at once.

While every reader of a durable log holds its next chunk back (``coalesce``), the events appended meanwhile are
held back from the store too, and handed to it when a hold ends: nobody could see them before then, and one
commit then covers one write to the client rather than one commit per burst of events. A log without readers,
or with one that waits without a hold, hands each event over at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Protocol


class LogLimitExceeded(Exception):
    pass


class LogWriteFailed(Exception):
    """An event could not be made durable: the run cannot go on."""


class StreamCut(Exception):
    """What a stream was reading went away before its end (an interaction deleted during its replay): the
    response is cut off, not ended, so that its client knows it did not get everything."""


class LoggableEvent(Protocol):
    event_id: str | None

    @property
    def event_type(self) -> str: ...

    def encode(self) -> bytes: ...


DONE = b"event: done\ndata: [DONE]\n\n"  # every stream's last frame
# The most a reader joins into one chunk: one far behind (a client that stalled, or came late to a long run)
# holds this much of a copy, plus what its connection buffers, rather than a copy of the whole log.
MAX_CHUNK_BYTES = 256 * 1024
# uvloop's clock and timers count whole milliseconds: a shorter timer fires at once, with the clock unchanged.
_TICK = 0.001


def frame(event_type: str, payload: bytes) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + payload + b"\n\n"


def split_frames(blob: bytes) -> list[bytes]:
    """Frames back out of their concatenation. JSON never holds a raw newline, so a blank line ends a frame."""
    return [part + b"\n\n" for part in blob.split(b"\n\n") if part]


# The rest of a stored log after an event, then DONE: where readers of a dropped log go on. Given the event's
# position and the bytes of the frames up to it as they were sent: a stored log whose images are stored apart
# (store/media.py) is shorter, and is found by position.
StoredRest = Callable[[int, int], AsyncGenerator[bytes, None]]


def cut_off(message: str) -> StoredRest:
    """The rest of a log that goes on elsewhere: its readers are cut off (they resume there)."""

    async def rest() -> AsyncGenerator[bytes, None]:
        raise StreamCut(message)
        yield b""  # an async generator

    return lambda position, offset: rest()


# Where a durable log's appends go: (interaction id, event seq, frame), committed later (store.append_event).
Sink = Callable[[str, int, bytes], None]


class EventLog(Protocol):
    """What runs append to and readers read from; the one place event ids are assigned."""

    def open(self, interaction_id: str, *, durable: bool = False, frames: list[bytes] | None = None) -> None: ...

    def has(self, interaction_id: str) -> bool: ...

    def length(self, interaction_id: str) -> int: ...

    async def append(self, interaction_id: str, event: LoggableEvent, *, terminal: bool = False) -> None: ...

    def frames(self, interaction_id: str) -> list[bytes]: ...

    def release(self, interaction_id: str) -> None: ...

    def close(self, interaction_id: str) -> None: ...

    def drop(self, interaction_id: str, stored: StoredRest | None = None) -> None: ...

    def read(
        self, interaction_id: str, after: int = 0, heartbeat: float = 15.0, coalesce: float = 0.0
    ) -> AsyncGenerator[bytes, None]: ...


class _Log:
    __slots__ = (
        "broken", "closed", "frames", "holding", "id", "last_delta", "max_bytes", "max_events", "readers", "sink",
        "size", "stored", "sunk", "visible", "waiters",
    )  # fmt: skip

    def __init__(self, interaction_id: str, max_events: int, max_bytes: int, sink: Sink | None, frames: list[bytes]):
        self.id = interaction_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.frames = frames
        self.size = sum(map(len, frames))
        self.visible = len(frames)  # frames readers may see: with a sink (durable), those committed
        self.sink = sink
        self.sunk = len(frames)  # frames handed to the sink
        self.readers = 0  # readers following the log
        self.holding = 0  # of them, those holding their next chunk back
        self.broken: BaseException | None = None
        self.closed = False
        self.stored: StoredRest | None = None  # set when the log is dropped and its frames released
        self.last_delta = -1  # the position of the latest step.delta frame
        self.waiters: list[asyncio.Future[bool]] = []  # True: woken by an event; False: by the heartbeat

    def release(self) -> None:
        """Hand the frames held back to the sink."""
        sink = self.sink
        if sink is not None:
            frames, interaction_id = self.frames, self.id
            for seq in range(self.sunk + 1, len(frames) + 1):
                sink(interaction_id, seq, frames[seq - 1])
            self.sunk = len(frames)

    def notify(self) -> None:
        if self.waiters:
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_result(True)
            self.waiters.clear()


def _time_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def _wait(log: _Log, loop: asyncio.AbstractEventLoop, seconds: float) -> bool:
    """Until the log changes (True) or ``seconds`` pass (False)."""
    waiter: asyncio.Future[bool] = loop.create_future()
    log.waiters.append(waiter)
    # A bare timer rather than asyncio.timeout, which costs several times more and runs per wait.
    timer = loop.call_later(seconds, _time_up, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


class MemoryEventLog:
    """In memory; with a ``sink``, the cache of a durable log whose truth is the store's events table."""

    def __init__(self, max_events: int, max_bytes: int, sink: Sink | None = None) -> None:
        self._logs: dict[str, _Log] = {}
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._sink = sink

    def open(self, interaction_id: str, *, durable: bool = False, frames: list[bytes] | None = None) -> None:
        """``durable``: appends go to the sink and are seen once committed. ``frames``: a log that continues,
        whose events so far are durable already."""
        sink = self._sink if durable else None
        self._logs[interaction_id] = _Log(interaction_id, self._max_events, self._max_bytes, sink, frames or [])

    def has(self, interaction_id: str) -> bool:
        return interaction_id in self._logs

    def length(self, interaction_id: str) -> int:
        """The events readers can have seen."""
        return self._logs[interaction_id].visible

    def committed(self, interaction_id: str, seq: int) -> None:
        """The store made event ``seq`` durable: readers may have it."""
        log = self._logs.get(interaction_id)
        if log is not None and seq > log.visible:
            log.visible = seq
            log.notify()

    def failed(self, interaction_id: str, error: BaseException) -> None:
        """An event could not be stored: its run's next append fails, and nothing after it is shown."""
        log = self._logs.get(interaction_id)
        if log is not None and log.broken is None:
            log.broken = error

    async def append(self, interaction_id: str, event: LoggableEvent, *, terminal: bool = False) -> None:
        """Assign the next event id, serialise once, wake readers. Terminal events bypass the limits so that a
        run over its limit can still end its stream properly."""
        log = self._logs[interaction_id]
        if log.broken is not None:
            raise LogWriteFailed(str(log.broken))
        if not terminal and len(log.frames) >= log.max_events:
            raise LogLimitExceeded(f"more than {log.max_events} events")
        seq = len(log.frames) + 1
        event.event_id = str(seq)
        data = frame(event.event_type, event.encode())
        if not terminal and log.size + len(data) > log.max_bytes:
            raise LogLimitExceeded(f"event log over {log.max_bytes} bytes")
        if event.event_type == "step.delta":
            log.last_delta = len(log.frames)
        log.frames.append(data)
        log.size += len(data)
        if log.sink is None:
            log.visible = seq
            log.notify()
        elif not log.holding or log.holding < log.readers:  # else the hold's end hands it over
            log.release()

    def release(self, interaction_id: str) -> None:
        """Hand every event held back to the store: before the run's result, which must cover them all."""
        log = self._logs.get(interaction_id)
        if log is not None:
            log.release()

    def extend(self, interaction_id: str, frames: list[bytes]) -> None:
        """Add events committed elsewhere (a mirror of a run on another replica): readers see them at once."""
        log = self._logs[interaction_id]
        log.frames.extend(frames)
        log.size += sum(map(len, frames))
        log.visible = len(log.frames)
        log.notify()

    def contents(self, interaction_id: str) -> bytes:
        """Every frame so far, concatenated."""
        return b"".join(self._logs[interaction_id].frames)

    def frames(self, interaction_id: str) -> list[bytes]:
        """Every frame so far, in order: what the store keeps, concatenated (by the store, which can write a
        long log without one more copy of it). The log's own list: not to be changed."""
        return self._logs[interaction_id].frames

    def close(self, interaction_id: str) -> None:
        log = self._logs[interaction_id]
        log.closed = True
        log.notify()

    def drop(self, interaction_id: str, stored: StoredRest | None = None) -> None:
        """Forget a closed log; later readers go to the store. Readers that already hold it finish reading it
        or, given ``stored`` (the log is in the store), from the store: its frames are released now, and a
        reader whose client stopped reading holds no copy of a log that the store keeps."""
        log = self._logs.pop(interaction_id, None)
        if log is not None and stored is not None:
            log.stored = stored
            log.frames = []
            log.visible = 0
            log.notify()

    def read(
        self, interaction_id: str, after: int = 0, heartbeat: float = 15.0, coalesce: float = 0.0
    ) -> AsyncGenerator[bytes, None]:
        """SSE frames after event ``after``, following the log until it closes, then ``DONE``. Events that are
        already there come as one chunk (up to ``MAX_CHUNK_BYTES``), with ``DONE`` if the log is closed by
        then (one write instead of two); an empty chunk means nothing arrived for ``heartbeat`` seconds.

        ``coalesce``: after a chunk with a ``step.delta``, the next chunk waits until that many seconds have
        passed, unless the log closes first. A write to a local client wakes it, and on a small machine it then
        takes the writer's CPU; a burst of deltas (a fast upstream, several tokens at once) is cheaper as one
        write. A token stream slower than one delta per ``coalesce`` is not held at all.

        The log is taken now, not at the first read: a run can end, and its log be dropped, before a response
        starts to iterate."""
        log = self._logs[interaction_id]
        return _follow(log, after, sum(map(len, log.frames[:after])), heartbeat, coalesce)


def _chunk(frames: list[bytes], start: int, end: int) -> tuple[bytes, int]:
    """The next chunk and where it ends: every frame up to ``end``, up to ``MAX_CHUNK_BYTES`` (one at least)."""
    if end - start > 1:
        size = 0
        for index in range(start, end):
            size += len(frames[index])
            if size > MAX_CHUNK_BYTES:
                end = max(index, start + 1)
                break
    return (frames[start] if end == start + 1 else b"".join(frames[start:end])), end


async def _follow(log: _Log, after: int, offset: int, heartbeat: float, coalesce: float) -> AsyncGenerator[bytes, None]:
    """``offset``: the bytes of the frames before ``after``. The frames list is never held across a yield:
    once the log is dropped and stored, a reader whose client stalled holds only its chunk."""
    position = after
    loop = asyncio.get_running_loop()
    held_until = 0.0
    log.readers += 1
    try:
        while True:
            if held_until and not log.closed:
                remaining = held_until - loop.time()
                if remaining > _TICK / 2:  # more may come, or the end
                    await _hold(log, loop, max(remaining, _TICK))  # a shorter wait would spin until the clock moves
                    continue
                held_until = 0.0
                log.release()  # what came during the hold goes to the store now, and out once committed
            count = log.visible  # 0 once the log is dropped and stored
            if position < count:
                if count - position == 1:
                    chunk, end = log.frames[position], count
                else:
                    chunk, end = _chunk(log.frames, position, count)
                if end < count:  # more to send at once
                    held_until = 0.0
                elif log.closed:
                    yield chunk + DONE
                    return
                else:
                    held_until = loop.time() + coalesce if coalesce and log.last_delta >= position else 0.0
                position = end
                offset += len(chunk)
                yield chunk
                continue
            if log.stored is not None:
                async with aclosing(log.stored(position, offset)) as rest:
                    async for chunk in rest:
                        yield chunk
                return
            if log.closed:
                yield DONE
                return
            if not await _wait(log, loop, heartbeat):
                yield b""
    finally:
        log.readers -= 1


async def _hold(log: _Log, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """Hold the next chunk back: while every reader holds, appends wait for the hold's end to be stored."""
    log.holding += 1
    try:
        await _wait(log, loop, seconds)
    finally:
        log.holding -= 1
