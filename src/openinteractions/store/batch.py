"""One batch of queued writes, applied in one transaction (group commit) with plain SQL.

A batch holds ``(kind, params, future)`` operations in the order they were queued: ``insert`` (a run's row),
``event`` (one event of a running interaction, no future: the store reports committed events to its watcher),
``media`` (an event that shows images, with them: store/media.py), ``finish`` (a run's result and whole log),
``lease`` (a heartbeat), ``usage`` (a running run's usage so far)
and ``rows`` (another module's inserts, such as the webhooks' outbox, that must commit with the results they go
with). Inserts go first, then events, then
results. Events of a run whose result is in the same batch are not written one by one: its result carries
them all, and the rows of its earlier events are deleted in the same transaction.

A result is written only while the run's lease is this server's (``server``): a server that lost a run to
another replica (which took it for dead) cannot overwrite what the new one does. Its events cannot fork the
log either: an event is a row keyed by its sequence number, and the second writer of a number fails. On a
shared database (``notify``) the batch tells the other replicas what it committed (store/replicas.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

from . import media
from .blobs import LargeLog, write_large_log

Op = tuple[str, list[Any], "asyncio.Future[None] | None"]

INSERT_COLUMNS = (
    "id, owner, status, model, agent, previous_interaction_id, created_at, updated_at, expires_at, request, "
    "input_steps, steps, usage, errors, events, size, recipe, lease_owner, lease_until"
)
_INSERT_WIDTH = INSERT_COLUMNS.count(",") + 1


def commit(raw: Any, mark: str, batch: list[Op], server: str = "", notify: bool = False) -> bool:
    """Commit ``batch`` on ``raw``, or return False if the database was locked (nothing written). Other
    errors are raised."""
    try:
        cursor = raw.cursor()
        _apply(cursor, mark, batch, server)
        if notify:
            _notify(cursor, batch)
        raw.commit()
    except Exception as exc:
        with contextlib.suppress(Exception):  # a broken connection: the error worth reporting is the first one
            raw.rollback()
        if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode in (
            sqlite3.SQLITE_BUSY,
            sqlite3.SQLITE_LOCKED,
        ):
            return False
        raise
    return True


def _apply(cursor: Any, mark: str, batch: list[Op], server: str) -> None:
    """This is the hot path of every stored interaction and of every event, so it goes to the driver with plain
    SQL (a Core statement costs several times the Python per row); ``mark`` is the driver's placeholder."""
    inserts = {params[0]: params for kind, params, _ in batch if kind == "insert"}
    finished = {params[-1] for kind, params, _ in batch if kind == "finish"}
    finishes = []
    large = []
    appended = []
    leases = []
    usages = []
    shown: list[tuple[str, media.Media]] = []
    for kind, params, _ in batch:
        if kind == "event":
            if params[0] not in finished:
                appended.append(params)
            continue
        if kind == "media":  # its images are written even when its run's result carries the event
            shown.extend((params[0], item) for item in params[3])
            if params[0] not in finished:
                appended.append(params[:3])
            continue
        if kind == "lease":
            leases.append(params)
            continue
        if kind == "usage":
            usages.append((*params, server))
            continue
        if kind != "finish":
            continue
        if isinstance(params[5], LargeLog):
            large.append(params)
            continue
        row = inserts.get(params[-1])
        if row is not None:
            row[2], row[7], row[11], row[12], row[13], row[14] = params[:6]  # status ... events
            row[15] += params[6]  # size
            row[17] = row[18] = None  # no lease: the run is over
        else:
            finishes.append((*params, server))
    m = mark
    if inserts:
        marks = ", ".join([m] * _INSERT_WIDTH)
        cursor.executemany(f"INSERT INTO interactions ({INSERT_COLUMNS}) VALUES ({marks})",
                           [tuple(row) for row in inserts.values()])  # fmt: skip
    if shown:
        media.write(cursor, m, shown)
    if appended:
        cursor.executemany(f"INSERT INTO events (interaction_id, seq, frame) VALUES ({m}, {m}, {m})", appended)
    if leases:
        cursor.executemany(f"UPDATE interactions SET lease_until = {m} WHERE id = {m} AND lease_owner = {m}", leases)
    if usages:
        cursor.executemany(f"UPDATE interactions SET usage = {m} WHERE id = {m} AND lease_owner = {m}", usages)
    if finishes:
        sql = (f"UPDATE interactions SET status = {m}, updated_at = {m}, steps = {m}, usage = {m}, errors = {m}, "
               f"events = {m}, size = size + {m}, lease_owner = NULL, lease_until = NULL "
               f"WHERE id = {m} AND (lease_owner = {m} OR lease_owner IS NULL)")  # fmt: skip
        cursor.executemany(sql, finishes)
    for params in large:
        write_large_log(cursor, params)
    gone = [(i, i) for i in finished if i not in inserts]  # a run inserted in this batch has no event rows yet
    if gone:  # unless the result was not written (the lease is another server's)
        cursor.executemany(f"DELETE FROM events WHERE interaction_id = {m} AND NOT EXISTS (SELECT 1 FROM "
                           f"interactions WHERE id = {m} AND status IN ('in_progress', 'queued'))", gone)  # fmt: skip
    for kind, params, _ in batch:
        if kind == "rows":  # another module's rows (webhooks' outbox), in the transaction of the results above
            cursor.executemany(params[0].format(m=m), params[1])


def _notify(cursor: Any, batch: list[Op]) -> None:
    """One notification per run of the batch: ``<id> <last seq>`` for its events, ``<id> end`` for its result."""
    last: dict[str, str] = {}
    for kind, params, _ in batch:
        if kind == "event" or kind == "media":
            last[params[0]] = str(params[1])
        elif kind == "finish":
            last[params[-1]] = "end"
    if last:
        payloads = [f"{interaction_id} {what}" for interaction_id, what in last.items()]
        cursor.execute("SELECT pg_notify('oi_events', payload) FROM unnest(%s::text[]) AS payload", (payloads,))


def utf8_size(*texts: str | None) -> int:
    # isascii() is a flag lookup: only text with other characters is encoded to be measured.
    return sum(len(t) if t.isascii() else len(t.encode()) for t in texts if t is not None)
