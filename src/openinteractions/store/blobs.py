"""SQLite's incremental blob I/O for event logs: long logs written from their frames, logs read in slices.

A value bound as a statement parameter is copied by SQLite (the bound value, then the row's record): for a
log at the 64 MiB limit, that and the join of its frames cost over 200 MB. Written as a ``zeroblob`` (which
takes no memory: SQLite keeps its length, not its bytes) and filled a piece at a time, it costs a piece. Read
back, ``substr()`` would load the whole blob for each slice; a blob handle reads the pages that hold the slice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

LARGE_LOG_BYTES = 1 << 20


def log_value(frames: Sequence[bytes]) -> LargeLog | bytes:
    """What SQLite writes for a log: its bytes or, from ``LARGE_LOG_BYTES`` on, a ``LargeLog``."""
    size = sum(map(len, frames))
    return LargeLog(frames, size) if size >= LARGE_LOG_BYTES else b"".join(frames)


class LargeLog:
    """A long event log, written from its frames through incremental blob I/O."""

    __slots__ = ("frames", "size")

    def __init__(self, frames: Sequence[bytes], size: int) -> None:
        self.frames = frames
        self.size = size

    def pieces(self) -> Iterator[bytes]:
        """The frames joined into pieces of about ``LARGE_LOG_BYTES``: a blob write per frame costs more."""
        batch: list[bytes] = []
        size = 0
        for frame in self.frames:
            batch.append(frame)
            size += len(frame)
            if size >= LARGE_LOG_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
        if batch:
            yield b"".join(batch)


def has_large_log(batch: list[tuple[str, list[Any], asyncio.Future[None] | None]]) -> bool:
    """A batch that writes a large log, or large images, goes to the writer thread: it takes ~10 ms a MiB, on
    the loop's time."""
    return any(
        (kind == "finish" and isinstance(params[5], LargeLog))
        or (kind == "media" and sum(len(item.data) for item in params[3]) >= LARGE_LOG_BYTES)
        for kind, params, _ in batch
    )


def write_large_log(cursor: Any, params: list[Any]) -> None:
    *final, log, added, interaction_id = params
    cursor.execute(
        "UPDATE interactions SET status = ?, updated_at = ?, steps = ?, usage = ?, errors = ?, "
        "events = zeroblob(?), size = size + ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
        (*final, log.size, added, interaction_id),
    )
    row = cursor.execute("SELECT rowid FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
    if row is None:  # deleted meanwhile: nothing to write, as for any other finish
        return
    with cursor.connection.blobopen("interactions", "events", row[0]) as blob:
        for piece in log.pieces():
            blob.write(piece)


def read_slice(db: sqlite3.Connection, interaction_id: str, offset: int, size: int) -> bytes:
    """``size`` bytes of a stored log from ``offset``, or fewer at its end. One read transaction, so that the
    row found is the row read."""
    db.execute("BEGIN")
    try:
        row = db.execute("SELECT rowid, length(events) FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
        if row is None or row[1] is None or offset >= row[1]:
            return b""
        with db.blobopen("interactions", "events", row[0], readonly=True) as blob:
            blob.seek(offset)
            return blob.read(size)
    finally:
        db.rollback()
