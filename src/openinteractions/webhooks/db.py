"""The webhook tables, in the store's database, and the SQL on them (SQLAlchemy Core, the same on SQLite and
PostgreSQL). Every function here takes a connection and runs in a worker thread.

``webhooks``: the registered (static) webhooks, each with its signing secrets and its delivery health.
``webhook_owner_secrets``: each owner's secrets for the URIs of a request's ``webhook_config``.
``webhook_outbox``: one row per event and destination, written in the transaction that stores the run's final
state; a delivery worker claims due rows with a lease, so that two processes never deliver one row at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)

from ..store.tables import schema_lock

metadata = MetaData()

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("name", String(512)),
    Column("uri", Text, nullable=False),
    Column("subscribed_events", Text, nullable=False),  # JSON list
    Column("state", String(40), nullable=False),
    Column("secrets", Text, nullable=False),  # JSON: see secrets.py
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("failing_since", Float),  # the first failed attempt since the last delivery
    Column("last_attempt_at", Float),
    Column("last_success_at", Float),
    Column("last_error", Text),
    Index("ix_webhooks_owner", "owner", "created_at"),
)

owner_secrets = Table(
    "webhook_owner_secrets",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("secrets", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("message_id", String(40), nullable=False),  # webhook-id: one per event, the same on every retry
    Column("owner", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("interaction_id", String(64)),
    Column("webhook_id", String(64)),  # a registered webhook; NULL: the uri of a request's webhook_config
    Column("uri", Text),
    Column("payload", Text, nullable=False),  # the body, exactly as sent
    Column("state", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("leased_by", String(64)),
    Column("last_attempt_at", Float),
    Column("last_http_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", Float),
    Index("ix_webhook_outbox_due", "state", "next_attempt_at"),
    Index("ix_webhook_outbox_owner", "owner", "created_at"),
)

# For SqlStore.queue_rows, which hands plain SQL to the driver in the batch of the run's final state.
OUTBOX_INSERT = (
    "INSERT INTO webhook_outbox (id, message_id, owner, event_type, interaction_id, webhook_id, uri, payload, "
    "state, attempts, created_at, next_attempt_at) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, 'pending', 0, "
    "{m}, {m})"
)


_CLAIMED = [outbox.c[name] for name in
            ("id", "message_id", "owner", "event_type", "payload", "created_at", "attempts", "webhook_id")]  # fmt: skip
_LISTED = [outbox.c[name] for name in
           ("id", "message_id", "event_type", "interaction_id", "webhook_id", "state", "attempts", "created_at",
            "next_attempt_at", "last_attempt_at", "last_http_status", "last_error", "delivered_at")]  # fmt: skip


def create(conn: Connection) -> None:
    schema_lock(conn)
    metadata.create_all(conn)


# ---- registered webhooks -----------------------------------------------------------------------------


def count_webhooks(conn: Connection, owner: str) -> int:
    return int(conn.execute(select(func.count()).where(webhooks.c.owner == owner)).scalar_one())


def insert_webhook(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(webhooks.insert().values(**row))


def get_webhook(conn: Connection, owner: str, webhook_id: str) -> dict[str, Any] | None:
    c = webhooks.c
    row = conn.execute(select(webhooks).where(and_(c.id == webhook_id, c.owner == owner))).first()
    return dict(row._mapping) if row else None


def list_webhooks(conn: Connection, owner: str, offset: int, limit: int) -> list[dict[str, Any]]:
    c = webhooks.c
    query = select(webhooks).where(c.owner == owner).order_by(c.created_at, c.id).offset(offset).limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]


def update_webhook(conn: Connection, owner: str, webhook_id: str, values: dict[str, Any]) -> bool:
    c = webhooks.c
    statement = update(webhooks).where(and_(c.id == webhook_id, c.owner == owner)).values(**values)
    return bool(conn.execute(statement).rowcount)


def delete_webhook(conn: Connection, owner: str, webhook_id: str) -> bool:
    c = webhooks.c
    if not conn.execute(delete(webhooks).where(and_(c.id == webhook_id, c.owner == owner))).rowcount:
        return False
    o = outbox.c
    conn.execute(delete(outbox).where(and_(o.webhook_id == webhook_id, o.state == "pending")))
    return True


def enabled_subscriptions(conn: Connection) -> list[tuple[str, str, list[str]]]:
    """(owner, webhook id, subscribed events) of every enabled webhook."""
    c = webhooks.c
    rows = conn.execute(select(c.owner, c.id, c.subscribed_events).where(c.state == "enabled"))
    return [(row.owner, row.id, json.loads(row.subscribed_events)) for row in rows]


# ---- owner secrets (webhook_config.uris) --------------------------------------------------------------


def get_owner_secrets(conn: Connection, owner: str) -> str | None:
    query = select(owner_secrets.c.secrets).where(owner_secrets.c.owner == owner)
    value = conn.execute(query).scalar_one_or_none()
    return str(value) if value is not None else None


def put_owner_secrets(conn: Connection, owner: str, secrets: str, now: float, exists: bool) -> None:
    if exists:
        statement = update(owner_secrets).where(owner_secrets.c.owner == owner)
        conn.execute(statement.values(secrets=secrets, updated_at=now))
    else:
        conn.execute(owner_secrets.insert().values(owner=owner, secrets=secrets, updated_at=now))


# ---- the outbox ---------------------------------------------------------------------------------------


@dataclass
class Claimed:
    id: str
    message_id: str
    owner: str
    event_type: str
    payload: str
    created_at: float
    attempts: int
    webhook_id: str | None
    uri: str  # the registered webhook's current uri, or the request's
    secrets: str | None  # the registered webhook's secrets (JSON); None: the owner's


def claim(conn: Connection, now: float, limit: int, lease_until: float, token: str) -> list[Claimed]:
    """Lease up to ``limit`` due rows to ``token``. One UPDATE whose subquery picks the rows: on PostgreSQL it
    locks them with FOR UPDATE SKIP LOCKED, so concurrent claimers take different rows; on SQLite, where writes
    are serialised anyway, the clause is left out. Rows of a webhook that is not enabled wait."""
    o, w = outbox.c, webhooks.c
    pending = and_(o.state == "pending", o.next_attempt_at <= now)
    # A read first: on SQLite an UPDATE takes the write lock even when it matches nothing, and most polls find
    # nothing due.
    if conn.execute(select(o.id).where(pending).limit(1)).first() is None:
        return []
    due = (
        select(o.id)
        .select_from(outbox.outerjoin(webhooks, o.webhook_id == w.id))
        .where(
            pending,
            or_(o.lease_until.is_(None), o.lease_until <= now),
            or_(o.webhook_id.is_(None), w.state == "enabled"),
        )
        .order_by(o.next_attempt_at)
        .limit(limit)
        .with_for_update(of=outbox, skip_locked=True)
    )
    conn.execute(update(outbox).where(o.id.in_(due)).values(lease_until=lease_until, leased_by=token))
    query = (
        select(*_CLAIMED, func.coalesce(w.uri, o.uri).label("uri"), w.secrets)
        .select_from(outbox.outerjoin(webhooks, o.webhook_id == w.id))
        .where(o.leased_by == token)
    )
    return [Claimed(**row._mapping) for row in conn.execute(query)]


@dataclass
class Outcome:
    attempted_at: float
    delivered: bool
    http_status: int | None
    error: str | None
    next_attempt_at: float | None  # None with a failure: given up


@dataclass
class DisablePolicy:
    failures: int
    seconds: float


def record(conn: Connection, row: Claimed, token: str, outcome: Outcome, disable: DisablePolicy) -> bool:
    """Store an attempt's outcome on its row (if this token still holds it) and on its webhook; True if that
    webhook was disabled by it."""
    o = outbox.c
    state = "delivered" if outcome.delivered else "pending" if outcome.next_attempt_at is not None else "failed"
    values: dict[str, Any] = {
        "state": state,
        "attempts": o.attempts + 1,
        "lease_until": None,
        "leased_by": None,
        "last_attempt_at": outcome.attempted_at,
        "last_http_status": outcome.http_status,
        "last_error": outcome.error,
    }
    if outcome.delivered:
        values["delivered_at"] = outcome.attempted_at
    elif outcome.next_attempt_at is not None:
        values["next_attempt_at"] = outcome.next_attempt_at
    conn.execute(update(outbox).where(and_(o.id == row.id, o.leased_by == token)).values(**values))
    if row.webhook_id is None:
        return False
    return _webhook_health(conn, row.webhook_id, outcome, disable)


def _webhook_health(conn: Connection, webhook_id: str, outcome: Outcome, policy: DisablePolicy) -> bool:
    c = webhooks.c
    where = c.id == webhook_id
    now = outcome.attempted_at
    if outcome.delivered:
        values = {"consecutive_failures": 0, "failing_since": None, "last_attempt_at": now, "last_success_at": now,
                  "last_error": None}  # fmt: skip
        conn.execute(update(webhooks).where(where).values(**values))
        return False
    failures = c.consecutive_failures + 1
    since = func.coalesce(c.failing_since, now)
    disable = and_(c.state == "enabled", failures >= policy.failures, since <= now - policy.seconds)
    conn.execute(
        update(webhooks)
        .where(where)
        .values(
            consecutive_failures=failures,
            failing_since=since,
            last_attempt_at=now,
            last_error=outcome.error,
            state=case((disable, "disabled_due_to_failed_deliveries"), else_=c.state),
        )
    )
    state = conn.execute(select(c.state).where(where)).scalar_one_or_none()
    return state == "disabled_due_to_failed_deliveries"


def release(conn: Connection, token_prefix: str) -> None:
    """Give back the leases of a process that stops, so that its interrupted deliveries go out again at once."""
    o = outbox.c
    statement = update(outbox).where(and_(o.leased_by.startswith(token_prefix, autoescape=True), o.state == "pending"))
    conn.execute(statement.values(lease_until=None, leased_by=None))


def sweep(conn: Connection, now: float, retention: float, window: float) -> None:
    """Forget finished deliveries past their retention; give up on rows that waited past the retry window
    (those of a disabled webhook, which are not claimed)."""
    o = outbox.c
    conn.execute(delete(outbox).where(and_(o.state != "pending", o.created_at <= now - retention)))
    stale = and_(o.state == "pending", o.created_at <= now - window, or_(o.lease_until.is_(None), o.lease_until <= now))
    conn.execute(update(outbox).where(stale).values(state="failed", last_error="not delivered within the retry window"))


def deliveries(
    conn: Connection, owner: str, webhook_id: str | None, interaction_id: str | None, offset: int, limit: int
) -> list[dict[str, Any]]:
    o, w = outbox.c, webhooks.c
    query = (
        select(*_LISTED, func.coalesce(w.uri, o.uri).label("uri"))
        .select_from(outbox.outerjoin(webhooks, o.webhook_id == w.id))
        .where(o.owner == owner)
    )
    if webhook_id is not None:
        query = query.where(o.webhook_id == webhook_id)
    if interaction_id is not None:
        query = query.where(o.interaction_id == interaction_id)
    query = query.order_by(o.created_at.desc(), o.id).offset(offset).limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]
