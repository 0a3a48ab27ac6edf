"""What each owner stores (interactions and bytes), for the per-owner storage quotas.

Summing an owner's rows costs an index scan, so a sum is reused for a few seconds and counted up by this
process's creates in between. One query per owner runs at a time: requests that find no sum wait for that one
query, and a stale sum is refreshed in the background while requests go on with it. (Without this, every request
that arrived during a refresh ran its own scan, and at 100 concurrent streams a few waited a second.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

logger = logging.getLogger(__name__)


class Usage(NamedTuple):
    rows: int
    bytes: int


class OwnerUsage:
    def __init__(self, usage: Callable[[str, float], Awaitable[tuple[int, int]]], refresh_seconds: float) -> None:
        self._usage = usage
        self._refresh_seconds = refresh_seconds
        self._known: dict[str, tuple[Usage, float]] = {}  # owner -> (usage, when it was summed)
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._generation: dict[str, int] = {}  # bumped by forget(), so a sum begun before it is dropped

    async def get(self, owner: str, now: float) -> Usage:
        known = self._known.get(owner)
        if known is None:
            await asyncio.shield(self._load(owner, now))  # a client leaving must not cancel the others' wait
            return self._known.get(owner, (Usage(0, 0), now))[0]
        if now - known[1] > self._refresh_seconds:
            self._load(owner, now)
        return known[0]

    def added(self, owner: str, size: int) -> None:
        """A create that will store about ``size`` bytes; the next sum has the exact figure."""
        if owner in self._known:
            usage, when = self._known[owner]
            self._known[owner] = (Usage(usage.rows + 1, usage.bytes + size), when)

    def forget(self, owner: str) -> None:
        """Rows were deleted: the next request sums again."""
        self._known.pop(owner, None)
        self._generation[owner] = self._generation.get(owner, 0) + 1

    def _load(self, owner: str, now: float) -> asyncio.Task[None]:
        task = self._loading.get(owner)
        if task is None:
            generation = self._generation.get(owner, 0)
            task = self._loading[owner] = asyncio.create_task(self._query(owner, now, generation))
            task.add_done_callback(_log_failure)
        return task

    async def _query(self, owner: str, now: float, generation: int) -> None:
        try:
            usage = Usage(*await self._usage(owner, now))
        finally:
            self._loading.pop(owner, None)
        if self._generation.get(owner, 0) == generation:
            self._known[owner] = (usage, now)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("summing an owner's stored interactions failed", exc_info=task.exception())
