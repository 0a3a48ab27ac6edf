"""Several servers on one PostgreSQL database: which of them are alive, and what they tell each other.

Each server holds a session-level advisory lock named after its id, on a connection of its own, for as long as
it runs. PostgreSQL releases it the moment that session ends (the process killed, its machine gone, the
connection cut), so the advisory locks in ``pg_locks`` are the list of live servers: no heartbeat table, and
no clock to trust. The executor takes over a run whose lease names a server missing from that list for a
while (``store.replica_grace_seconds``), instead of waiting for the lease to run out. The wait covers a
PostgreSQL restart, after which every server has lost its lock and takes it again as soon as it reconnects.

The same connection LISTENs. Live events cross replicas as notifications sent in the transaction that commits
them (store/batch.py): ``oi_events`` ``<id> <last seq>`` for appended events, ``<id> end`` for a run's result;
``oi_cancel`` ``<id>`` for a cancel asked on a replica that does not run it. A notification carries no event:
a replica following a run reads the committed rows, so one lost while the listener reconnects loses nothing;
``reconnected`` tells the followers to read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from .base import Listener

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "oi_events"
CANCEL_CHANNEL = "oi_cancel"
_RETRY_SECONDS = (0.05, 0.1, 0.2, 0.5, 1.0)  # reconnection backoff, then once a second

# The advisory locks held in this database, as the 64-bit keys they were taken with: a bigint key is shown
# split in two (classid: high half, objid: low half) with objsubid 1.
LIVE_SERVERS_SQL = """
    SELECT classid::bigint, objid::bigint FROM pg_locks
     WHERE locktype = 'advisory' AND objsubid = 1 AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def lock_key(server_id: str) -> int:
    """The advisory lock key of a server id (16 hex digits): the same 64 bits, as a signed bigint."""
    key = int(server_id, 16)
    return key - (1 << 64) if key >= 1 << 63 else key


def server_of(classid: int, objid: int) -> str:
    return f"{(classid << 32) | objid:016x}"


def connect_args(url: URL) -> dict[str, Any]:
    """psycopg's keyword arguments for the database of a SQLAlchemy URL (a unix socket's folder included)."""
    args: dict[str, Any] = url.translate_connect_args(username="user", database="dbname")
    args.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    return args


class Membership:
    """This server's presence on the database (its lock) and its ear (LISTEN), on one connection that is
    opened again whenever it is cut."""

    def __init__(self, url: URL, server_id: str, listener: Listener) -> None:
        self._args = connect_args(url)
        self._server_id = server_id
        self._listener = listener
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        conn = await self._connect()  # the first connection's failure is the caller's to report
        self._task = asyncio.create_task(self._listen(conn), name="replica membership")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(**self._args, autocommit=True)
        try:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(self._server_id)])
            row = await cursor.fetchone()
            if not row or not row[0]:
                raise RuntimeError(f"another session holds server id {self._server_id}'s lock")
            await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            try:
                async for note in conn.notifies():
                    self._listener.notified(note.channel, note.payload)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                logger.warning("the replica connection to the database was cut (%s): reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()
            conn = await self._reconnect()
            self._listener.reconnected()

    async def _reconnect(self) -> psycopg.AsyncConnection[Any]:
        attempt = 0
        while True:
            await asyncio.sleep(_RETRY_SECONDS[min(attempt, len(_RETRY_SECONDS) - 1)])
            attempt += 1
            try:
                conn = await self._connect()
            except Exception as exc:
                if attempt in (1, 10) or attempt % 60 == 0:
                    logger.warning("reconnecting to the database for replica membership: %s", exc)
                continue
            logger.warning("replica membership restored after %d attempts", attempt)
            return conn
