"""The first-byte and idle deadlines of one upstream stream (its request, response head and body reads), kept
by one timer for the whole stream.

An ``asyncio.timeout`` around every read schedules and cancels a timer handle per chunk, which cost more than
the rest of a chunk's handling (about 9 µs a read on a 2-vCPU VM). Here one timer fires only when a read could
be late and checks whether the read under way is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

T = TypeVar("T")
_EARLY = 0.001  # a timer may fire this much before its time (the loop's clock resolution, with room)


class ReadDeadlines:
    def __init__(self, first: float, idle: float) -> None:
        """``first``: the loop time by which the first read must return; ``idle``: how long each later read may
        take, counted from when it starts (time spent handling what was read does not count)."""
        self._loop = asyncio.get_running_loop()
        self._idle = idle
        self._due = first
        self._first = True
        self._reader_task: asyncio.Task[object] | None = None  # set while a read is under way
        self._expired = False
        self._check_at = first
        self._handle = self._loop.call_at(first, self._check)

    async def opening(self, exchange: Awaitable[T]) -> T:
        """The request and the response's head, under the first read's deadline; TimeoutError if too late."""
        return await self._await(exchange)

    async def next(self, reader: AsyncIterator[bytes], idle: float | None = None) -> bytes:
        """The next piece of the body; TimeoutError if it comes too late, StopAsyncIteration at its end.
        ``idle`` replaces the idle timeout for this read."""
        if not self._first:
            self._due = self._loop.time() + (self._idle if idle is None else idle)
            if self._due < self._check_at:  # the first read's deadline was later: check sooner
                self._handle.cancel()
                self._schedule(self._due)
        self._first = False
        return await self._await(reader.__anext__())

    async def _await(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._reader_task = task
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:  # ours, not a cancel from outside
                raise TimeoutError from None
            raise
        finally:
            self._reader_task = None

    def close(self) -> None:
        self._handle.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        task = self._reader_task
        if task is None or now + _EARLY < self._due:
            # No read under way (its deadline starts with it), or the one under way still has time.
            self._schedule(now + self._idle if task is None else self._due)
            return
        self._expired = True
        task.cancel()

    def _schedule(self, when: float) -> None:
        self._check_at = when
        self._handle = self._loop.call_at(when, self._check)
