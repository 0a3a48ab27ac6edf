"""How many interactions each owner stores, for the per-owner storage quota.

Counting an owner's rows costs a scan, so a count is reused for a few seconds and counted up by this process's
creates in between. One query per owner runs at a time: requests that find no count wait for that one query,
and a stale count is refreshed in the background while requests go on with it. (Without this, every request
that arrived during a refresh ran its own scan, and at 100 concurrent streams a few waited a second.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class OwnerCounts:
    def __init__(self, count: Callable[[str, float], Awaitable[int]], refresh_seconds: float) -> None:
        self._count = count
        self._refresh_seconds = refresh_seconds
        self._known: dict[str, tuple[int, float]] = {}  # owner -> (count, when it was counted)
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._generation: dict[str, int] = {}  # bumped by forget(), so a count begun before it is dropped

    async def get(self, owner: str, now: float) -> int:
        known = self._known.get(owner)
        if known is None:
            await asyncio.shield(self._load(owner, now))  # a client leaving must not cancel the others' wait
            return self._known.get(owner, (0, now))[0]
        if now - known[1] > self._refresh_seconds:
            self._load(owner, now)
        return known[0]

    def added(self, owner: str) -> None:
        if owner in self._known:
            count, when = self._known[owner]
            self._known[owner] = (count + 1, when)

    def forget(self, owner: str) -> None:
        """Rows were deleted: the next request counts again."""
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
            count = await self._count(owner, now)
        finally:
            self._loading.pop(owner, None)
        if self._generation.get(owner, 0) == generation:
            self._known[owner] = (count, now)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("counting an owner's interactions failed", exc_info=task.exception())
