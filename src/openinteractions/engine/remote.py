"""Runs that execute on another server, as seen from this one: their live events, and the wait for their end.

A client may reach any replica. When the run it asks about executes elsewhere, this server mirrors the run's
durable log: the committed rows of the events table, read again whenever a notification says more were
committed (store/replicas.py) and, once the run ends, the rest of its stored log. Readers follow a mirror as
they follow a local run's log (events/log.py), so a stream attached here carries the same bytes as one
attached where the run executes. A mirror lives while someone reads it.

The truth is the table, not the notifications: the mirrors read again after the listener reconnects, and
every few seconds in case a notification went missing (and on SQLite, where no other process notifies, when a
run taken over later by this server was unowned for a while). Notifications only mark mirrors to be read; one
reader reads every marked mirror in two queries, so that a burst of notifications costs a read, not a read
per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
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
        self.readers = 0
        self.loaded = asyncio.Event()  # read once
        self.done = asyncio.Event()  # the run has ended: its readers went on to the stored log


class RemoteRuns:
    def __init__(self, store: Store, stored_rest: Callable[[str, str], StoredRest]) -> None:
        self._store = store
        self._stored_rest = stored_rest  # (id, owner) -> the stored log from a byte offset
        self._log = MemoryEventLog(_UNBOUNDED, _UNBOUNDED)
        self._mirrors: dict[str, _Mirror] = {}
        self._marked: set[str] = set()  # mirrors to read again
        self._reader: asyncio.Task[None] | None = None
        self._reading = asyncio.Lock()  # one read of the table at a time: each starts where the last ended
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._refresher = asyncio.create_task(self._refresh_forever(), name="remote run mirrors")

    def stop(self) -> None:
        for task in (self._refresher, self._reader):
            if task is not None:
                task.cancel()

    # ---- notifications ------------------------------------------------------------------------------

    def notified(self, payload: str) -> None:
        """``<id> <last seq>`` or ``<id> end``, from the transaction that committed them."""
        mirror = self._mirrors.get(payload.partition(" ")[0])
        if mirror is not None:
            self._mark([mirror])

    def reconnected(self) -> None:
        self._mark(self._mirrors.values())

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
            await self._read([mirror])  # a notification may not have come yet
        if mirror.done.is_set():
            self._release(mirror)
            return None
        if after > mirror.count:
            self._release(mirror)
            raise IndexError(after)
        return self._reading_from(mirror, self._log.read(interaction_id, after, heartbeat, coalesce))

    async def frames(self, interaction_id: str) -> list[bytes] | None:
        """The committed events of a run executing elsewhere; None if it does not run anywhere."""
        return (await self._store.live_events({interaction_id: 0}))[interaction_id]

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

    async def _reading_from(self, mirror: _Mirror, frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        try:
            async with aclosing(frames):
                async for chunk in frames:
                    yield chunk
        finally:
            self._release(mirror)

    async def _mirror(self, interaction_id: str, owner: str) -> _Mirror | None:
        """The run's mirror, with a reader counted; None if the run does not execute anywhere."""
        mirror = self._mirrors.get(interaction_id)
        if mirror is None:
            mirror = _Mirror(interaction_id, owner)
            self._mirrors[interaction_id] = mirror  # first, so that no notification from here on is missed
            self._log.open(interaction_id)
            self._mark([mirror])
        mirror.readers += 1
        await mirror.loaded.wait()
        if mirror.done.is_set():  # it has ended: its stored log is complete
            self._release(mirror)
            return None
        return mirror

    def _release(self, mirror: _Mirror) -> None:
        mirror.readers -= 1
        if mirror.readers == 0 and self._mirrors.get(mirror.id) is mirror:
            del self._mirrors[mirror.id]
            self._log.drop(mirror.id)
            mirror.done.set()
            mirror.loaded.set()

    # ---- reading the table --------------------------------------------------------------------------

    def _mark(self, mirrors: Iterable[_Mirror]) -> None:
        self._marked.update(mirror.id for mirror in mirrors)
        if self._marked and (self._reader is None or self._reader.done()):
            self._reader = asyncio.create_task(self._read_marked(), name="remote run reader")

    async def _read_marked(self) -> None:
        while self._marked:
            marked, self._marked = self._marked, set()
            mirrors = [m for i in marked if (m := self._mirrors.get(i)) is not None]
            try:
                await self._read(mirrors)
            except Exception:
                logger.exception("reading the events of runs on other servers failed; retrying")
                self._marked.update(m.id for m in mirrors)
                await asyncio.sleep(1.0)

    async def _read(self, mirrors: list[_Mirror]) -> None:
        """Add the events committed since; a run that has ended hands its readers over to its stored log."""
        async with self._reading:
            live = [m for m in mirrors if self._mirrors.get(m.id) is m and not m.done.is_set()]
            if not live:
                return
            found = await self._store.live_events({m.id: m.count for m in live})
            for mirror in live:
                if self._mirrors.get(mirror.id) is not mirror:  # its last reader left meanwhile
                    continue
                frames = found.get(mirror.id)
                if frames is None:
                    self._hand_over(mirror)
                elif frames:
                    self._log.extend(mirror.id, frames)
                    mirror.count += len(frames)
                mirror.loaded.set()

    def _hand_over(self, mirror: _Mirror) -> None:
        """The run has ended: its readers go on from its stored log, at the byte where each one is."""
        del self._mirrors[mirror.id]
        with contextlib.suppress(KeyError):
            self._log.drop(mirror.id, self._stored_rest(mirror.id, mirror.owner))
        mirror.done.set()
        mirror.loaded.set()
