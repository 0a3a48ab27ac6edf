"""The store interface: interactions and their event logs, always scoped to an owner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class BrokenChain(Exception):
    """A link of a ``previous_interaction_id`` chain is missing (deleted or expired)."""

    def __init__(self, missing_id: str) -> None:
        super().__init__(missing_id)
        self.missing_id = missing_id


class ChainTooLong(Exception):
    pass


class ChainTooBig(Exception):
    """The chain stores more bytes than the caller may load; raised before its rows are read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the chain stores more than {limit} bytes")
        self.size = size
        self.limit = limit


class Listener(Protocol):
    """Who hears what the other servers on a shared database say (store/replicas.py)."""

    def notified(self, channel: str, payload: str) -> None: ...

    def reconnected(self) -> None:
        """Notifications may have been missed: whoever follows something reads it again."""
        ...


class NoListener:
    def notified(self, channel: str, payload: str) -> None:
        return None

    def reconnected(self) -> None:
        return None


@dataclass
class StoredInteraction:
    id: str
    owner: str
    status: str
    created_at: float
    updated_at: float
    expires_at: float
    model: str | None = None
    agent: str | None = None
    previous_interaction_id: str | None = None
    request: dict[str, Any] | None = None  # request fields echoed on the resource, and the raw input
    input_steps: str = "[]"  # JSON, exactly as normalised at creation
    steps: str = "[]"  # JSON, exactly as assembled from the event log
    usage: str | None = None
    errors: str | None = None
    recipe: str | None = None  # the run's recipe (engine/recipe.py), JSON
    lease_owner: str | None = None  # the server running it, and until when its lease holds
    lease_until: float | None = None
    cancel_requested: float | None = None  # when a cancel was asked on a server that did not run it


@dataclass
class FinalState:
    status: str
    updated_at: float
    steps: str
    usage: str | None
    errors: str | None


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def insert(self, record: StoredInteraction) -> asyncio.Future[None]:
        """Queue the row of a starting run; writes are applied in order. Await the result to know it is stored."""
        ...

    def finish(self, interaction_id: str, final: FinalState, events: bytes | Sequence[bytes]) -> asyncio.Future[None]:
        """Queue a run's final state and its whole event log: the concatenated SSE frames, or the frames in
        order, which the store concatenates as it writes them (a long log is not copied into one piece)."""
        ...

    def watch_events(self, committed: Callable[[str, int], None], failed: Callable[[str, BaseException], None]) -> None:
        """Who hears of appended events: ``committed(id, seq)`` once durable, in order; ``failed`` if not."""
        ...

    def append_event(self, interaction_id: str, seq: int, frame: bytes) -> None:
        """Queue one event of a running interaction, after its row's insert (group commit)."""
        ...

    def save_usage(self, interaction_id: str, usage: str) -> None:
        """Keep a running interaction's usage so far (JSON), for whoever takes it over after a crash."""
        ...

    def heartbeat(self, interaction_ids: Sequence[str], owner: str, until: float) -> asyncio.Future[None]:
        """Extend the lease of runs held by ``owner``."""
        ...

    async def run_events(self, interaction_id: str) -> list[bytes]:
        """The durable log of a run that has not ended: its frames in order."""
        ...

    async def get(self, interaction_id: str, owner: str, now: float) -> StoredInteraction | None: ...

    async def chain(
        self, interaction_id: str, owner: str, now: float, limit: int, max_bytes: int | None = None
    ) -> list[StoredInteraction]:
        """The chain ending at ``interaction_id``, oldest first; [] if that one is unknown. ``ChainTooBig`` if
        its rows store more than ``max_bytes``, found before they are read."""
        ...

    async def events(self, interaction_id: str, offset: int = 0, size: int | None = None) -> bytes:
        """The stored event log (the concatenated SSE frames, images as references), or ``size`` bytes of it from
        byte ``offset``: fewer at its end, none past it or once the interaction is gone. Replays read it a page at
        a time, so that a reader holds one page, not the log."""
        ...

    async def media(self, interaction_id: str, digests: Collection[str]) -> dict[str, bytes]:
        """The base64 data of the images the interaction shows, of these digests (by digest): what the references
        in its stored log stand for (store/media.py). A replay expands its pages with them."""
        ...

    async def has_media(self, interaction_id: str) -> bool:
        """Whether the interaction's stored log holds references to images, which make it shorter than what its
        readers were sent."""
        ...

    async def events_size(self, interaction_id: str, owner: str, now: float) -> int | None:
        """The stored event log's length in bytes; None when the owner has no such interaction (as ``get``).
        A replay asks this rather than ``get``, which would load the whole assembled result."""
        ...

    async def delete(self, interaction_id: str, owner: str) -> bool: ...

    async def count(self, owner: str, now: float) -> int: ...

    async def usage(self, owner: str, now: float) -> tuple[int, int]:
        """How many interactions ``owner`` stores, and their bytes as stored."""
        ...

    async def sweep(self, now: float) -> int:
        """Delete what has expired; returns how many interactions went."""
        ...

    @property
    def shared(self) -> bool:
        """Several servers may share the database (they see each other through it)."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Who hears the other replicas' notifications; before ``join``."""
        ...

    async def join(self, server_id: str) -> None:
        """Run as ``server_id``: results are stored only for runs whose lease it holds; on a shared database
        the other servers see it alive from now until its process ends."""
        ...

    async def leases(self) -> tuple[dict[str, int], set[str]]:
        """(the servers named by the leases of unfinished runs, with how many each, the servers alive on the
        database)."""
        ...

    async def lapsed(self, now: float) -> bool:
        """Whether an unfinished run's lease has run out (or it has none)."""
        ...

    async def live_events(self, positions: dict[str, int]) -> dict[str, list[bytes] | None]:
        """For each run, the committed events after its position (events so far); None if it has ended (or is
        gone)."""
        ...

    async def claim(
        self, owner: str, now: float, until: float, dead: set[str], limit: int | None = None
    ) -> list[StoredInteraction]:
        """Take for ``owner`` the lease of unfinished runs (up to ``limit``) whose lease ran out or names a
        server in ``dead``."""
        ...

    async def run_states(self, interaction_ids: Sequence[str]) -> dict[str, tuple[str | None, bool]]:
        """For each of these runs still unfinished: (the server its lease names, whether a cancel is asked)."""
        ...

    async def request_cancel(self, interaction_id: str, owner: str, now: float) -> bool:
        """Ask whoever runs it to cancel a run; False if it is not running."""
        ...

    async def shared_secret(self, name: str, candidate: str) -> str:
        """The secret ``name`` every server on the database uses: ``candidate`` if none was kept before."""
        ...
