"""Per-model run slots: at most so many runs of one model generate at once; the others wait, first come first
served, with status ``queued``."""

from __future__ import annotations

import asyncio
from collections import deque


class ModelSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """A slot now, if one is free and no run waits for one."""
        if self.used < self.limit and not self._waiting:
            self.used += 1
            return True
        return False

    def force(self) -> None:
        """A run taken over after a crash was generating already: it keeps going, over the limit if need be."""
        self.used += 1

    async def wait(self) -> None:
        """Until a slot is handed over; a run cancelled meanwhile leaves the queue (or hands its slot on)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed over just as it was cancelled
            else:
                self._waiting.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: used stays the same
                return
        self.used -= 1
