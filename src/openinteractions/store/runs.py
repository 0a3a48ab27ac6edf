"""The SQL of runs between servers: their leases, who takes them over, a cancel asked from another replica,
the committed events of a run executing elsewhere, and the secrets every server shares. Each function runs on
a connection the store hands it (a read, or a write transaction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, text, update

from . import media
from .base import StoredInteraction
from .replicas import CANCEL_CHANNEL, LIVE_SERVERS_SQL, server_of
from .tables import UNFINISHED, events, interactions, server_secrets

RECORD_COLUMNS = [c for c in interactions.c if c.name not in ("events", "size", "lease_owner", "lease_until")]
_KEEP_SECRET = text("INSERT INTO server_secrets (name, value) VALUES (:name, :value) ON CONFLICT (name) DO NOTHING")


def leases(conn: Connection, shared: bool) -> tuple[dict[str, int], set[str]]:
    """(the servers named by the leases of unfinished runs, with how many each, the servers alive on a shared
    database)."""
    c = interactions.c
    owners = select(c.lease_owner, func.count()).where(UNFINISHED).group_by(c.lease_owner)
    named = {row[0]: int(row[1]) for row in conn.execute(owners) if row[0]}
    alive = {server_of(*row) for row in conn.execute(text(LIVE_SERVERS_SQL))} if shared else set()
    return named, alive


def lapsed(conn: Connection, now: float) -> bool:
    """Whether an unfinished run's lease has run out (or it has none)."""
    c = interactions.c
    query = select(c.id).where(and_(UNFINISHED, c.lease_until.is_(None) | (c.lease_until < now))).limit(1)
    return conn.execute(query).first() is not None


def live_events(conn: Connection, positions: dict[str, int]) -> dict[str, list[bytes] | None]:
    """For each run, the committed events after its position; None for a run that has ended (or is gone).
    Two queries for any number of runs: a replica following many runs reads them together."""
    c, e = interactions.c, events.c
    statuses = dict(conn.execute(select(c.id, c.status).where(c.id.in_(list(positions)))).all())
    running: dict[str, list[bytes] | None] = {i: [] for i in positions if statuses.get(i) in ("in_progress", "queued")}
    found: dict[str, list[bytes] | None] = dict.fromkeys(positions)
    found.update(running)
    if running:
        wanted = or_(*(and_(e.interaction_id == i, e.seq > positions[i]) for i in running))
        rows = select(e.interaction_id, e.seq, e.frame).where(wanted).order_by(e.interaction_id, e.seq)
        for interaction_id, seq, frame in conn.execute(rows):
            frames = running[interaction_id]
            assert frames is not None
            if seq == positions[interaction_id] + len(frames) + 1:  # read up to a gap (never expected)
                frames.append(bytes(frame))
    for interaction_id, frames in running.items():  # images stored apart: the frames as they were appended
        if frames and any(media.MARK in frame for frame in frames):
            running[interaction_id] = [media.expanded(conn, interaction_id, frame) for frame in frames]
    found.update(running)
    return found


def claim(
    conn: Connection, owner: str, now: float, until: float, dead: set[str], shared: bool, limit: int | None
) -> list[Any]:
    c = interactions.c
    lapsed = c.lease_until.is_(None) | (c.lease_until < now)
    if dead:
        lapsed = lapsed | c.lease_owner.in_(sorted(dead))
    query = select(*RECORD_COLUMNS, c.lease_owner).where(and_(UNFINISHED, lapsed)).order_by(c.created_at)
    if limit is not None:
        query = query.limit(limit)
    if shared:
        query = query.with_for_update(skip_locked=True)
    rows = list(conn.execute(query).all())
    ids = [row._mapping["id"] for row in rows]
    if ids:
        conn.execute(update(interactions).where(c.id.in_(ids)).values(lease_owner=owner, lease_until=until))
    return rows


def states(conn: Connection, interaction_ids: Sequence[str]) -> dict[str, tuple[str | None, bool]]:
    c = interactions.c
    query = select(c.id, c.lease_owner, c.cancel_requested).where(and_(c.id.in_(list(interaction_ids)), UNFINISHED))
    return {row[0]: (row[1], row[2] is not None) for row in conn.execute(query)}


def request_cancel(conn: Connection, interaction_id: str, owner: str, now: float, shared: bool) -> bool:
    c = interactions.c
    asked = update(interactions).where(and_(c.id == interaction_id, c.owner == owner, UNFINISHED))
    if not conn.execute(asked.values(cancel_requested=now)).rowcount:
        return False
    if shared:  # sent when the transaction commits
        conn.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": CANCEL_CHANNEL, "id": interaction_id})
    return True


def shared_secret(conn: Connection, name: str, candidate: str) -> str:
    query = select(server_secrets.c.value).where(server_secrets.c.name == name)
    kept = conn.execute(query).scalar_one_or_none()
    if kept is None:
        conn.execute(_KEEP_SECRET, {"name": name, "value": candidate})  # the first server's wins
        kept = conn.execute(query).scalar_one()
    return str(kept)


def row_to_record(row: Any) -> StoredInteraction:
    m = dict(row._mapping)
    m["request"] = json.loads(m["request"])
    return StoredInteraction(**m)
