"""The SQL store (SQLAlchemy Core, async): SQLite by default; the same SQL runs on PostgreSQL.

Steps and events are kept as the exact bytes that were produced, so a chain replays byte for byte and a stored
stream replays frame for frame. Times are epoch seconds (floats), which behave the same on every database.

Database calls run in threads with a synchronous engine, one thread hop per operation rather than one per
statement. Writes queue up and are committed together, one transaction per batch (group commit): a hundred runs
finishing together cost one commit, not a hundred.

Where batches are committed depends on the database. On a server database (PostgreSQL) a commit waits for the
server, so it runs in a single writer thread. SQLite in WAL mode with ``synchronous=NORMAL`` commits by
appending to the WAL file without an fsync, which takes less time than handing the batch to a thread and back
(on a 2-vCPU VM the hop cost ~0.2 ms and the commit ~0.05 ms), so batches are committed on the event loop's
thread, on a connection that never waits for a lock (``busy_timeout=0``). What could block there is kept off it:
WAL checkpoints (SQLite's automatic ones are off; the writer thread runs one every ``_CHECKPOINT_EVERY`` writes),
and any batch queued while the writer thread has work (a delete, a sweep, a checkpoint) goes behind that work
in the thread, so that writes stay in order and never contend. A batch that meets a lock anyway (another process
on the file) is retried in the thread, which waits for it. When the run that finishes is the only one
writing, no other write can join its batch, and its result commits at once instead of a loop iteration later.
The default SQLite file is opened with the unix-excl VFS (see ``sqlite_url``): one process owns it. Several
servers share a PostgreSQL database (store/replicas.py): each run is under one server's lease, and a result is
written only by the server that holds its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import psycopg
from sqlalchemy import Connection, Engine, and_, create_engine, delete, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from .. import jsontext
from . import media, runs
from .base import BrokenChain, ChainTooBig, ChainTooLong, FinalState, Listener, NoListener, StoredInteraction
from .batch import Op, commit, utf8_size
from .blobs import has_large_log, log_value, read_slice
from .replicas import Membership
from .run_queries import RunQueries
from .runs import row_to_record
from .sqlite import sqlite_pragmas
from .tables import CHAIN_SQL, create_or_migrate, events, interactions

logger = logging.getLogger(__name__)
_RECORD_COLUMNS = runs.RECORD_COLUMNS
_CHECKPOINT_EVERY = 1000  # writes committed on the loop's thread between two WAL checkpoints


def _record_with_media(conn: Connection, row: Any) -> StoredInteraction:
    record = row_to_record(row)
    record.steps = media.expanded_text(conn, record.id, record.steps)
    return record


class SqlStore(RunQueries):
    def __init__(self, url: str | URL, outage_seconds: float = 60.0) -> None:
        self._url = make_url(url)
        self.outage_seconds = outage_seconds  # how long writes wait for an unreachable database
        self._engine: Engine | None = None
        self._pending: list[Op] = []
        self._running: set[str] = set()  # runs whose row is inserted (or queued) and not finished
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._raw: Any = None  # the writer thread's own DBAPI connection, for batches (touched only there)
        self._inline: Any = None  # SQLite: the connection that commits batches on the loop's thread
        self._thread_jobs = 0  # work handed to the writer thread and not finished yet
        self._since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._read_threads = ThreadPoolExecutor(4, thread_name_prefix="store-reader")
        self._server_id = ""  # the server whose leases this store's results are fenced by (join)
        self._membership: Membership | None = None  # PostgreSQL: this server's lock and LISTEN connection
        self._listener: Listener = NoListener()
        self._with_media: set[str] = set()  # runs whose log shows an image stored apart (store/media.py)
        self._committed: Callable[[str, int], None] = _ignore
        self._failed: Callable[[str, BaseException], None] = _ignore

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "store not started"
        return self._engine

    async def start(self) -> None:
        is_sqlite = self._url.get_backend_name() == "sqlite"
        # A file that another server holds is reported within 2 s; once connected, waits are up to 30 s.
        # A server's connections to a database server can be cut under it (a restart, a failover, an idle
        # reaper): each is checked when taken from the pool, so a retried write gets a live one.
        connect_args = {"timeout": 2, "check_same_thread": False} if is_sqlite else {}
        engine = create_engine(self._url, connect_args=connect_args, pool_pre_ping=not is_sqlite)
        if is_sqlite:
            event.listen(engine, "connect", sqlite_pragmas)
        try:
            await asyncio.get_running_loop().run_in_executor(self._write_thread, create_or_migrate, engine)
        except OperationalError as exc:
            if is_sqlite and "locked" in str(exc):
                path = unquote(str(engine.url.database).removeprefix("file:"))
                raise RuntimeError(
                    f"the store {path} is in use by another process (with store.sqlite_exclusive, the default, "
                    "one server keeps its SQLite file to itself)"
                ) from None
            raise
        self._engine = engine
        if is_sqlite:
            self._inline = engine.raw_connection()
            self._inline.execute("PRAGMA busy_timeout=0")
        self._writer = asyncio.create_task(self._write_forever(), name="store writer")

    async def close(self) -> None:
        if self._writer is not None:
            await self._flush()
            if self._checkpointing is not None:
                await self._checkpointing
            self._writer.cancel()
            self._writer = None
            await asyncio.get_running_loop().run_in_executor(self._write_thread, self._release_raw)
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._membership is not None:
            await self._membership.close()
            self._membership = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._write_thread.shutdown()
        self._read_threads.shutdown()

    async def _read(self, work: Callable[[Connection], Any]) -> Any:
        def call() -> Any:
            with self.engine.connect() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._read_threads, call)

    async def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        def call() -> Any:
            with self.engine.begin() as conn:
                return work(conn)

        return await self._in_write_thread(call)

    async def _in_write_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        self._thread_jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._write_thread, call, *args)
        finally:
            self._thread_jobs -= 1

    # ---- writes: queued, applied in order, one transaction per batch --------------------------------

    def _queue(self, kind: str, params: list[Any], wake: bool = True) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((kind, params, future))
        if wake:
            self._wake.set()
        return future

    def watch_events(self, committed: Callable[[str, int], None], failed: Callable[[str, BaseException], None]) -> None:
        """Who hears of appended events: ``committed(id, seq)`` once an event is durable, in order;
        ``failed(id, error)`` if it could not be written."""
        self._committed = committed
        self._failed = failed

    def append_event(self, interaction_id: str, seq: int, frame: bytes) -> None:
        """Queue one event of a running interaction; the watcher hears when it is committed. No future: this
        runs for every event, and a batch's events are reported in one pass. An event that shows images is
        stored with references to them, written with it (store/media.py)."""
        if len(frame) >= media.MIN_DATA:
            stored, shown = media.extract(frame)
            if shown:
                self._with_media.add(interaction_id)
                self._pending.append(("media", [interaction_id, seq, stored, shown], None))
                self._wake.set()
                return
        self._pending.append(("event", [interaction_id, seq, frame], None))
        self._wake.set()

    def heartbeat(self, interaction_ids: Sequence[str], owner: str, until: float) -> asyncio.Future[None]:
        """Extend the lease of runs this server holds."""
        for interaction_id in interaction_ids[:-1]:
            self._pending.append(("lease", [until, interaction_id, owner], None))
        return self._queue("lease", [until, interaction_ids[-1], owner])

    def save_usage(self, interaction_id: str, usage: str) -> None:
        """Keep a running interaction's usage so far (JSON), for whoever takes it over after a crash."""
        self._pending.append(("usage", [usage, interaction_id], None))
        self._wake.set()

    def _settle(self, batch: list[Op]) -> None:
        """A batch is committed: its futures are resolved and its events reported, in order."""
        committed = self._committed
        for kind, params, future in batch:
            if future is None:
                if kind == "event" or kind == "media":
                    committed(params[0], params[1])
            elif not future.done():
                future.set_result(None)

    def insert(self, record: StoredInteraction) -> asyncio.Future[None]:
        r = record
        request = jsontext.dumps(r.request or {})
        size = utf8_size(request, r.input_steps, r.steps, r.usage, r.errors)
        size += utf8_size(r.recipe)
        row = [r.id, r.owner, r.status, r.model, r.agent, r.previous_interaction_id, r.created_at, r.updated_at,
               r.expires_at, request, r.input_steps, r.steps, r.usage, r.errors, None, size, r.recipe,
               r.lease_owner, r.lease_until]  # fmt: skip
        self._running.add(r.id)
        return self._queue("insert", row)

    def finish(self, interaction_id: str, final: FinalState, events: bytes | Sequence[bytes]) -> asyncio.Future[None]:
        f = final
        self._running.discard(interaction_id)
        frames = [events] if isinstance(events, bytes) else events
        # What the result adds to the row's size: the insert's steps, usage and errors are empty in practice.
        # Images count in full, in every interaction that shows them: the quota measures what an owner keeps.
        added = utf8_size(f.steps, f.usage, f.errors) + sum(map(len, frames))
        steps = f.steps
        if interaction_id in self._with_media:  # its images were stored with its events: references here too
            self._with_media.discard(interaction_id)
            frames, known = media.extract_frames(frames)
            steps = media.extract_text(steps, known)
        log = log_value(frames) if self._inline else b"".join(frames)
        params = [f.status, f.updated_at, steps, f.usage, f.errors, log, added, interaction_id]
        alone = not self._running
        future = self._queue("finish", params, wake=not alone)
        # No other run is writing, so no write can join this batch: commit now, on this thread, rather than a
        # loop iteration later. The run then closes its log in the same step, and its last events and [DONE]
        # reach the client in one write.
        if alone and not self._commit_now():
            self._wake.set()
        return future

    def queue_rows(self, sql: str, rows: list[tuple[Any, ...]]) -> asyncio.Future[None]:
        """Queue another module's plain-SQL writes (``{m}``: the driver's placeholder). They commit with every
        write queued before the event loop next runs the writer: queued right before a run's ``finish``, in the
        same step, they land in its transaction (the webhook outbox relies on this)."""
        return self._queue("rows", [sql, rows])

    def _commit_now(self) -> bool:
        """Commit everything queued, on the loop's thread; False if it has to wait for the writer task."""
        batch = self._pending
        with contextlib.suppress(Exception):  # the writer task retries and reports, as for any batch
            if self._commit_inline(batch):
                self._pending = []
                self._settle(batch)
                return True
        return False

    def _commit_inline(self, batch: list[Op]) -> bool:
        """SQLite: commit ``batch`` on the loop's thread unless the writer thread has work or the file is
        locked; True if it was committed."""
        if self._inline is None or self._thread_jobs or has_large_log(batch):
            return False
        if not commit(self._inline, "?", batch, self._server_id):
            return False
        self._count_inline(len(batch))
        return True

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            if not self._commit_inline(batch):
                await self._write_through_outage(batch)
        except Exception:
            logger.exception("a batch of %d writes failed; retrying them one by one", len(batch))
            for op in batch:
                try:
                    await self._in_write_thread(self._write_batch, [op])
                except Exception as exc:
                    if op[2] is not None:
                        op[2].set_exception(exc)
                    elif op[0] == "event" or op[0] == "media":
                        self._failed(op[1][0], exc)
                    if op[0] == "insert":
                        self._running.discard(op[1][0])  # a row that never landed will not be finished
                    batch = [b for b in batch if b is not op]
        self._settle(batch)

    async def _write_through_outage(self, batch: list[Op]) -> None:
        """Write ``batch`` in the writer thread, again and again while the database cannot be reached (a
        restart, a failover), up to ``outage_seconds``: the runs wait meanwhile, and their readers see nothing
        that is not stored. Other errors are raised at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.outage_seconds
        pause = 0.05
        while True:
            try:
                await self._in_write_thread(self._write_batch, batch)
                return
            except (OperationalError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if not self.shared or loop.time() + pause > deadline:
                    raise
                logger.warning("the database cannot be reached (%s); retrying in %g s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _count_inline(self, writes: int) -> None:
        self._since_checkpoint += writes
        if self._since_checkpoint >= _CHECKPOINT_EVERY and self._checkpointing is None:
            self._since_checkpoint = 0
            self._checkpointing = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            await self._in_write_thread(self._checkpoint)
        except Exception:
            logger.exception("WAL checkpoint failed")
        finally:
            self._checkpointing = None

    def _checkpoint(self) -> None:
        """In the writer thread: copy the WAL into the database file, without waiting for readers."""
        raw = self.engine.raw_connection()
        try:
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            raw.close()

    def _write_batch(self, batch: list[Op]) -> None:
        """In the writer thread: one transaction on its own DBAPI connection. Every stored interaction passes
        here twice, and SQLAlchemy's Connection and transaction objects cost more than the SQL itself."""
        raw, self._raw = self._raw or self.engine.raw_connection(), None
        try:
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            if not commit(raw, mark, batch, self._server_id, notify=self.shared):
                raise sqlite3.OperationalError("database is locked")  # even after the busy timeout
        except Exception:
            raw.close()  # back to the pool; the next batch checks out a connection afresh
            raise
        self._raw = raw

    def _release_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    # ---- reads and housekeeping ---------------------------------------------------------------------

    async def get(self, interaction_id: str, owner: str, now: float) -> StoredInteraction | None:
        c = interactions.c
        query = select(*_RECORD_COLUMNS).where(and_(c.id == interaction_id, c.owner == owner, c.expires_at > now))

        def read(conn: Connection) -> StoredInteraction | None:
            row = conn.execute(query).first()
            try:
                return _record_with_media(conn, row) if row else None
            except media.MissingMedia:  # deleted between the two reads
                return None

        record: StoredInteraction | None = await self._read(read)
        return record

    async def chain(
        self, interaction_id: str, owner: str, now: float, limit: int, max_bytes: int | None = None
    ) -> list[StoredInteraction]:
        bound = max_bytes if max_bytes is not None else 2**62
        params = {"id": interaction_id, "owner": owner, "now": now, "limit": limit, "max_bytes": bound}

        def read(conn: Connection) -> tuple[list[str], list[StoredInteraction]]:
            links = conn.execute(CHAIN_SQL, params).all()
            if links and links[0].total > bound:  # the walk stops once over: nothing big was read
                raise ChainTooBig(links[0].total, bound)
            ids = [link.id for link in links]
            rows = conn.execute(select(*_RECORD_COLUMNS).where(interactions.c.id.in_(ids))).all() if ids else []
            records = []
            for row in rows:
                try:
                    records.append(_record_with_media(conn, row))
                except media.MissingMedia:  # deleted between the two reads
                    raise BrokenChain(row._mapping["id"]) from None
            return ids, records

        ids, found = await self._read(read)
        if not ids:
            return []
        by_id = {record.id: record for record in found}
        records = [by_id[i] for i in ids]
        if len(records) > limit:
            raise ChainTooLong(f"the chain is longer than limits.max_chain_length ({limit})")
        if records[0].previous_interaction_id is not None:
            raise BrokenChain(records[0].previous_interaction_id)
        return records

    async def media(self, interaction_id: str, digests: Collection[str]) -> dict[str, bytes]:
        """The base64 data of the images ``interaction_id`` shows, of these digests (by digest)."""
        found: dict[str, bytes] = await self._read(lambda conn: media.read(conn, interaction_id, digests))
        return found

    async def has_media(self, interaction_id: str) -> bool:
        """Whether the interaction's stored log holds references to images (store/media.py)."""
        return bool(await self._read(lambda conn: media.shows_any(conn, interaction_id)))

    async def events(self, interaction_id: str, offset: int = 0, size: int | None = None) -> bytes:
        c = interactions.c
        if size is None:
            query = select(c.events).where(c.id == interaction_id)
        elif self._url.get_backend_name() == "sqlite":
            page: bytes = await self._read_raw(lambda db: read_slice(db, interaction_id, offset, size))
            return page
        else:  # PostgreSQL slices the value on its side: only the page crosses the wire
            query = select(func.substr(c.events, offset + 1, size)).where(c.id == interaction_id)
        blob = await self._read(lambda conn: conn.execute(query).scalar_one_or_none())
        return bytes(blob or b"")

    async def events_size(self, interaction_id: str, owner: str, now: float) -> int | None:
        c = interactions.c
        visible = and_(c.id == interaction_id, c.owner == owner, c.expires_at > now)
        query = select(func.coalesce(func.length(c.events), 0)).where(visible)
        size = await self._read(lambda conn: conn.execute(query).scalar_one_or_none())
        return None if size is None else int(size)

    async def _read_raw(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def call() -> Any:
            raw = self.engine.raw_connection()
            try:
                connection = raw.driver_connection
                assert connection is not None
                return work(connection)
            finally:
                raw.close()

        return await asyncio.get_running_loop().run_in_executor(self._read_threads, call)

    async def delete(self, interaction_id: str, owner: str) -> bool:
        c = interactions.c
        statement = delete(interactions).where(and_(c.id == interaction_id, c.owner == owner))

        def work(conn: Connection) -> int:
            deleted = conn.execute(statement).rowcount
            if deleted:
                conn.execute(delete(events).where(events.c.interaction_id == interaction_id))
                media.forget(conn, interaction_id)
            return int(deleted)

        return bool(await self._transaction(work))

    async def count(self, owner: str, now: float) -> int:
        c = interactions.c
        query = select(func.count()).where(and_(c.owner == owner, c.expires_at > now))
        return int(await self._read(lambda conn: conn.execute(query).scalar_one()))

    async def usage(self, owner: str, now: float) -> tuple[int, int]:
        c = interactions.c
        query = select(func.count(), func.coalesce(func.sum(c.size), 0)).where(
            and_(c.owner == owner, c.expires_at > now)
        )
        rows, size = await self._read(lambda conn: conn.execute(query).one())
        return int(rows), int(size)

    async def sweep(self, now: float) -> int:
        statement = delete(interactions).where(interactions.c.expires_at <= now)
        orphans = delete(events).where(~events.c.interaction_id.in_(select(interactions.c.id)))

        def work(conn: Connection) -> int:
            removed = int(conn.execute(statement).rowcount or 0)
            if removed:
                conn.execute(orphans)  # the logs of expired runs that never ended
            media.forget_orphans(conn)  # also the images of a run whose result came after its row was deleted
            return removed

        return int(await self._transaction(work))

    async def run_events(self, interaction_id: str) -> list[bytes]:
        """The durable log of a run that has not ended: its frames in order."""
        query = select(events.c.frame).where(events.c.interaction_id == interaction_id).order_by(events.c.seq)

        def read(conn: Connection) -> list[bytes]:
            frames = [bytes(row[0]) for row in conn.execute(query).all()]
            if not any(media.MARK in frame for frame in frames):
                return frames
            self._with_media.add(interaction_id)  # its result stores references again
            return [media.expanded(conn, interaction_id, frame) for frame in frames]

        frames: list[bytes] = await self._read(read)
        return frames


def _ignore(*_: Any) -> None:
    return None
