"""The store's side of runs and replicas: leases, claims, cancels, the live events a replica follows, the
servers alive on the database and the secrets they share (SQL in store/runs.py). Part of ``SqlStore``
(store/sql.py), kept apart to keep that module small."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from . import runs
from .base import Listener, StoredInteraction
from .replicas import Membership

_RUNS_PER_READ = 200  # runs whose new events one query reads (replicas following many runs)


class RunQueries:
    """Mixed into ``SqlStore``, which provides the connection helpers and the state below."""

    _url: URL
    _server_id: str
    _listener: Listener
    _membership: Membership | None

    async def _read(self, work: Callable[[Connection], Any]) -> Any:
        raise NotImplementedError

    async def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        raise NotImplementedError

    @property
    def shared(self) -> bool:
        """Several servers may share this database (PostgreSQL); SQLite is one process's."""
        return self._url.get_backend_name() != "sqlite"

    def subscribe(self, listener: Listener) -> None:
        """Who hears the other replicas' notifications (store/replicas.py); before ``join``."""
        self._listener = listener

    async def join(self, server_id: str) -> None:
        """Run as ``server_id`` (16 hex digits): results are written only for runs whose lease it holds and,
        on PostgreSQL, the other replicas see it alive as long as its membership connection lasts."""
        self._server_id = server_id
        if self.shared:
            self._membership = Membership(self._url, server_id, self._listener)
            await self._membership.start()

    async def leases(self) -> tuple[dict[str, int], set[str]]:
        """(the servers named by the leases of unfinished runs, with how many each, the servers alive on the
        database)."""
        named, alive = await self._read(lambda conn: runs.leases(conn, self.shared))
        return named, alive if self.shared else {self._server_id}

    async def lapsed(self, now: float) -> bool:
        """Whether an unfinished run's lease has run out (or it has none): a read, before a claim's write."""
        return bool(await self._read(lambda conn: runs.lapsed(conn, now)))

    async def live_events(self, positions: dict[str, int]) -> dict[str, list[bytes] | None]:
        """For each run, the committed events after its position (events so far); None if it has ended."""
        found: dict[str, list[bytes] | None] = {}
        pairs = list(positions.items())
        for start in range(0, len(pairs), _RUNS_PER_READ):
            part = dict(pairs[start : start + _RUNS_PER_READ])

            def read(conn: Connection, part: dict[str, int] = part) -> dict[str, list[bytes] | None]:
                return runs.live_events(conn, part)

            found.update(await self._read(read))
        return found

    async def claim(
        self, owner: str, now: float, until: float, dead: set[str], limit: int | None = None
    ) -> list[StoredInteraction]:
        """Take the lease of unfinished runs (up to ``limit``) whose lease ran out or names a server in
        ``dead``. PostgreSQL skips rows another replica is claiming, so that replicas claim side by side."""
        shared = self.shared
        rows = await self._transaction(lambda conn: runs.claim(conn, owner, now, until, dead, shared, limit))
        return [runs.row_to_record(row) for row in rows]

    async def run_states(self, interaction_ids: Sequence[str]) -> dict[str, tuple[str | None, bool]]:
        """For each of these runs still unfinished: (the server its lease names, whether a cancel is asked)."""
        states: dict[str, tuple[str | None, bool]] = await self._read(lambda c: runs.states(c, interaction_ids))
        return states

    async def request_cancel(self, interaction_id: str, owner: str, now: float) -> bool:
        """Ask whoever runs it (or takes it over) to cancel a run; False if it is not running."""
        shared = self.shared
        return bool(await self._transaction(lambda c: runs.request_cancel(c, interaction_id, owner, now, shared)))

    async def shared_secret(self, name: str, candidate: str) -> str:
        """The secret ``name`` every server on this database uses: ``candidate`` if none was kept before."""
        return str(await self._transaction(lambda conn: runs.shared_secret(conn, name, candidate)))
