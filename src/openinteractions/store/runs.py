"""The SQL of runs between servers: their leases, who takes them over, a cancel asked from another replica,
the committed events of a run executing elsewhere, and the secrets every server shares. Each function runs on
a connection the store hands it (a read, or a write transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, select, text, update

from .replicas import CANCEL_CHANNEL, LIVE_SERVERS_SQL, server_of
from .tables import UNFINISHED, events, interactions, server_secrets

RECORD_COLUMNS = [c for c in interactions.c if c.name not in ("events", "size", "lease_owner", "lease_until")]
_KEEP_SECRET = text("INSERT INTO server_secrets (name, value) VALUES (:name, :value) ON CONFLICT (name) DO NOTHING")


def leases(conn: Connection, shared: bool) -> tuple[set[str], set[str]]:
    """(the servers named by the leases of unfinished runs, the servers alive on a shared database)."""
    owners = select(interactions.c.lease_owner).where(UNFINISHED).distinct()
    named = {row[0] for row in conn.execute(owners) if row[0]}
    alive = {server_of(*row) for row in conn.execute(text(LIVE_SERVERS_SQL))} if shared else set()
    return named, alive


def live_events(conn: Connection, interaction_id: str, after: int) -> list[bytes] | None:
    status = select(interactions.c.status).where(interactions.c.id == interaction_id)
    if conn.execute(status).scalar_one_or_none() not in ("in_progress", "queued"):
        return None
    e = events.c
    rows = select(e.seq, e.frame).where(and_(e.interaction_id == interaction_id, e.seq > after)).order_by(e.seq)
    frames: list[bytes] = []
    for seq, frame in conn.execute(rows):
        if seq != after + len(frames) + 1:  # never expected: the log is read up to its first gap
            break
        frames.append(bytes(frame))
    return frames


def claim(conn: Connection, owner: str, now: float, until: float, dead: set[str], shared: bool) -> list[Any]:
    c = interactions.c
    lapsed = c.lease_until.is_(None) | (c.lease_until < now)
    if dead:
        lapsed = lapsed | c.lease_owner.in_(sorted(dead))
    query = select(*RECORD_COLUMNS, c.lease_owner).where(and_(UNFINISHED, lapsed)).order_by(c.created_at)
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
