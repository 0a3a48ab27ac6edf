"""Runs that execute on another server, as seen from this one: their live events, and the wait for their end.

A client may reach any replica. When the run it asks about executes elsewhere, this server mirrors the run's
durable log: the committed rows of the events table, read again whenever a notification says more were
committed (store/replicas.py) and, once the run ends, the rest of its stored log. Readers follow a mirror as
they follow a local run's log (events/log.py), so a stream attached here carries the same bytes as one
attached where the run executes. A mirror lives while someone reads it.

The truth is the table, not the notifications: a mirror reads again after the listener reconnects, and every
few seconds in case a notification went missing (and on SQLite, where no other process notifies, when a run
taken over later by this server was unowned for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from ..events.log import MemoryEventLog, StoredRest
from ..store.base import Store

logger = logging.getLogger(__name__)
_REFRESH_SECONDS = 5.0
_UNBOUNDED = 1 << 62  # a mirror holds what its run logged, within the limits the run kept


class _Mirror:
    def __init__(self, interaction_id: str, owner: str) -> None:
        self.id = interaction_id
        self.owner = owner
        self.count = 0  # events read so far
        self.wanted = 0  # the last event a notification announced
        self.ended = False  # the run's result is stored (or will be: a notification said so)
        self.readers = 0
        self.loaded = asyncio.Event()
        self.done = asyncio.Event()  # the mirror handed its readers over to the stored log
        self.sync: asyncio.Task[None] | None = None
        self.reading = asyncio.Lock()  # one read of the table at a time: each one starts where the last ended


class RemoteRuns:
    def __init__(self, store: Store, stored_rest: Callable[[str, str], StoredRest]) -> None:
        self._store = store
        self._stored_rest = stored_rest  # (id, owner) -> the stored log from a byte offset
        self._log = MemoryEventLog(_UNBOUNDED, _UNBOUNDED)
        self._mirrors: dict[str, _Mirror] = {}
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._refresher = asyncio.create_task(self._refresh_forever(), name="remote run mirrors")

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for mirror in self._mirrors.values():
            if mirror.sync is not None:
                mirror.sync.cancel()

    # ---- notifications ------------------------------------------------------------------------------

    def notified(self, payload: str) -> None:
        """``<id> <last seq>`` or ``<id> end``, from the transaction that committed them."""
        interaction_id, _, what = payload.partition(" ")
        mirror = self._mirrors.get(interaction_id)
        if mirror is None:
            return
        if what == "end":
            mirror.ended = True
        elif what.isdigit():
            mirror.wanted = max(mirror.wanted, int(what))
        self._schedule(mirror)

    def reconnected(self) -> None:
        for mirror in list(self._mirrors.values()):
            self._schedule(mirror)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(_REFRESH_SECONDS)
            self.reconnected()

    # ---- readers ------------------------------------------------------------------------------------

    async def follow(
        self, interaction_id: str, owner: str, after: int, heartbeat: float, coalesce: float
    ) -> AsyncGenerator[bytes, None] | None:
        """The frames after event ``after`` of a run executing elsewhere, live, then ``DONE``; None if it
        does not run anywhere (the caller replays the stored log). ``IndexError`` if ``after`` is beyond what
        it has logged."""
        mirror = await self._mirror(interaction_id, owner)
        if mirror is None:
            return None
        if after > mirror.count and not mirror.done.is_set():
            await self._read_more(mirror)  # a notification may not have come yet
        if after > mirror.count and not mirror.done.is_set():
            self._release(mirror)
            raise IndexError(after)
        return self._reading(mirror, self._log.read(interaction_id, after, heartbeat, coalesce))

    async def frames(self, interaction_id: str) -> list[bytes] | None:
        """The committed events of a run executing elsewhere; None if it does not run anywhere."""
        return await self._store.live_events(interaction_id, 0)

    async def wait_end(self, interaction_id: str, owner: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a run executing elsewhere to end; False if it still runs."""
        mirror = await self._mirror(interaction_id, owner)
        if mirror is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                await mirror.done.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._release(mirror)

    async def _reading(self, mirror: _Mirror, frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        try:
            async with aclosing(frames):
                async for chunk in frames:
                    yield chunk
        finally:
            self._release(mirror)

    async def _mirror(self, interaction_id: str, owner: str) -> _Mirror | None:
        """The run's mirror, with a reader counted; None if the run does not execute anywhere."""
        mirror = self._mirrors.get(interaction_id)
        if mirror is None or mirror.done.is_set():
            mirror = _Mirror(interaction_id, owner)
            self._mirrors[interaction_id] = mirror  # first, so that no notification from here on is missed
            self._log.open(interaction_id)
            self._schedule(mirror)
        mirror.readers += 1
        await mirror.loaded.wait()
        if mirror.done.is_set():  # it has ended: its stored log is complete
            self._release(mirror)
            return None
        return mirror

    def _release(self, mirror: _Mirror) -> None:
        mirror.readers -= 1
        if mirror.readers == 0 and self._mirrors.get(mirror.id) is mirror:
            self._forget(mirror)

    def _forget(self, mirror: _Mirror) -> None:
        del self._mirrors[mirror.id]
        if mirror.sync is not None and mirror.sync is not asyncio.current_task():
            mirror.sync.cancel()
        if not mirror.done.is_set():
            self._log.drop(mirror.id)
            mirror.done.set()
            mirror.loaded.set()

    # ---- reading the table --------------------------------------------------------------------------

    def _schedule(self, mirror: _Mirror) -> None:
        if mirror.sync is None or mirror.sync.done():
            mirror.sync = asyncio.create_task(self._sync(mirror), name=f"mirror {mirror.id}")

    async def _sync(self, mirror: _Mirror) -> None:
        """Read until the mirror has what was announced; hand its readers over once the run has ended."""
        try:
            while not mirror.done.is_set():
                ended = mirror.ended
                running = await self._read_more(mirror)
                mirror.loaded.set()
                if not running or ended:
                    self._hand_over(mirror)
                    return
                if mirror.wanted <= mirror.count and not mirror.ended:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("reading the events of interaction %s failed; retrying", mirror.id)
            await asyncio.sleep(1.0)
            if self._mirrors.get(mirror.id) is mirror:
                mirror.sync = None
                self._schedule(mirror)

    async def _read_more(self, mirror: _Mirror) -> bool:
        """Add the events committed since; False if the run does not execute any more."""
        async with mirror.reading:
            frames = await self._store.live_events(mirror.id, mirror.count)
            if frames is None:
                return False
            if frames and not mirror.done.is_set():
                self._log.extend(mirror.id, frames)
                mirror.count += len(frames)
            return True

    def _hand_over(self, mirror: _Mirror) -> None:
        """The run has ended: its readers go on from its stored log, at the byte where each one is."""
        if mirror.done.is_set():
            return
        with contextlib.suppress(KeyError):
            self._log.drop(mirror.id, self._stored_rest(mirror.id, mirror.owner))
        mirror.done.set()
        mirror.loaded.set()
        if self._mirrors.get(mirror.id) is mirror:
            del self._mirrors[mirror.id]
