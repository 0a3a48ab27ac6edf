"""The event log: the only channel between a run and its readers.

A run appends events; SSE responses, the store and the assembler read them. Event ids are assigned here and
nowhere else: the n-th event of an interaction has ``event_id`` ``str(n)``, starting at 1. Each event is
serialised once, at append, into the exact SSE frame every reader sends.

This in-memory implementation serves one process. The interface (append / close / read) is what a shared,
Redis-backed log implements for several replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..schema.events import Event


class LogLimitExceeded(Exception):
    pass


@dataclass(slots=True)
class LoggedEvent:
    seq: int
    event_type: str
    frame: bytes  # b"event: <type>\ndata: <json>\n\n", the event's JSON carrying its event_id

    @classmethod
    def build(cls, seq: int, event_type: str, payload: bytes) -> LoggedEvent:
        return cls(seq, event_type, b"event: " + event_type.encode() + b"\ndata: " + payload + b"\n\n")

    @property
    def payload(self) -> bytes:
        return self.frame[len(self.event_type) + 14 : -2]


@dataclass
class _Log:
    max_events: int
    max_bytes: int
    entries: list[LoggedEvent] = field(default_factory=list)
    size: int = 0
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class MemoryEventLog:
    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._logs: dict[str, _Log] = {}
        self._max_events = max_events
        self._max_bytes = max_bytes

    def open(self, interaction_id: str) -> None:
        self._logs[interaction_id] = _Log(self._max_events, self._max_bytes)

    def has(self, interaction_id: str) -> bool:
        return interaction_id in self._logs

    async def append(self, interaction_id: str, event: Event, *, terminal: bool = False) -> LoggedEvent:
        """Assign the next event id, serialise once, wake readers. Terminal events bypass the limits so
        that a run over its limit can still end its stream properly."""
        log = self._logs[interaction_id]
        if not terminal and len(log.entries) >= log.max_events:
            raise LogLimitExceeded(f"more than {log.max_events} events")
        seq = len(log.entries) + 1
        event.event_id = str(seq)
        payload = event.model_dump_json(exclude_none=True, by_alias=True).encode()
        if not terminal and log.size + len(payload) > log.max_bytes:
            raise LogLimitExceeded(f"event log over {log.max_bytes} bytes")
        logged = LoggedEvent.build(seq, event.event_type, payload)
        log.entries.append(logged)
        log.size += len(payload)
        log.notify()
        return logged

    def entries(self, interaction_id: str) -> list[LoggedEvent]:
        return self._logs[interaction_id].entries

    async def close(self, interaction_id: str) -> None:
        log = self._logs[interaction_id]
        log.closed = True
        log.notify()

    def drop(self, interaction_id: str) -> None:
        """Forget a closed log. Readers that already hold it finish reading; later ones go to the store."""
        self._logs.pop(interaction_id, None)

    async def read(self, interaction_id: str, after: int = 0, heartbeat: float = 15.0) -> AsyncIterator[bytes]:
        """SSE frames after event ``after``, following the log until it closes. Several events that are
        already there come as one chunk; an empty chunk means nothing arrived for ``heartbeat`` seconds."""
        log = self._logs[interaction_id]
        position = after
        while True:
            entries = log.entries
            if position < len(entries):
                end = len(entries)
                yield b"".join([e.frame for e in entries[position:end]])
                position = end
                continue
            if log.closed:
                return
            try:
                async with asyncio.timeout(heartbeat):
                    await log.changed.wait()
            except TimeoutError:
                yield b""
