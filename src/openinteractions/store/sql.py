"""The SQL store (SQLAlchemy Core, async): SQLite by default; the same SQL runs on PostgreSQL.

Steps and events are kept as the exact JSON text that was produced, so a chain replays byte for byte.
Times are epoch seconds (floats), which behave the same on every database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..events.log import LoggedEvent
from .base import BrokenChain, ChainTooLong, FinalState, StoredInteraction

metadata = MetaData()

interactions = Table(
    "interactions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("model", String(256)),
    Column("agent", String(256)),
    Column("previous_interaction_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("request", Text, nullable=False),
    Column("input_steps", Text, nullable=False),
    Column("steps", Text, nullable=False),
    Column("usage", Text),
    Column("errors", Text),
    Index("ix_interactions_owner_created", "owner", "created_at"),
    Index("ix_interactions_expires", "expires_at"),
)

interaction_events = Table(
    "interaction_events",
    metadata,
    Column("interaction_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

_CHAIN_SQL = text(
    """
    WITH RECURSIVE chain(id, prev, depth) AS (
        SELECT id, previous_interaction_id, 0 FROM interactions
         WHERE id = :id AND owner = :owner AND expires_at > :now
        UNION ALL
        SELECT i.id, i.previous_interaction_id, chain.depth + 1
          FROM interactions i JOIN chain ON i.id = chain.prev
         WHERE i.owner = :owner AND i.expires_at > :now AND chain.depth < :limit
    )
    SELECT id, depth FROM chain ORDER BY depth DESC
    """
)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'openinteractions.db'}"


def _row_to_record(row: Any) -> StoredInteraction:
    m = row._mapping
    return StoredInteraction(
        id=m["id"],
        owner=m["owner"],
        status=m["status"],
        model=m["model"],
        agent=m["agent"],
        previous_interaction_id=m["previous_interaction_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        expires_at=m["expires_at"],
        request=json.loads(m["request"]),
        input_steps=m["input_steps"],
        steps=m["steps"],
        usage=m["usage"],
        errors=m["errors"],
    )


class SqlStore:
    def __init__(self, url: str) -> None:
        self._url = url
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "store not started"
        return self._engine

    async def start(self) -> None:
        is_sqlite = self._url.startswith("sqlite")
        engine = create_async_engine(self._url, connect_args={"timeout": 30} if is_sqlite else {})
        if is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def insert(self, record: StoredInteraction) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(interactions).values(
                    id=record.id,
                    owner=record.owner,
                    status=record.status,
                    model=record.model,
                    agent=record.agent,
                    previous_interaction_id=record.previous_interaction_id,
                    created_at=record.created_at,
                    updated_at=record.updated_at,
                    expires_at=record.expires_at,
                    request=json.dumps(record.request or {}, separators=(",", ":")),
                    input_steps=record.input_steps,
                    steps=record.steps,
                    usage=record.usage,
                    errors=record.errors,
                )
            )

    async def finish(self, interaction_id: str, final: FinalState, events: list[LoggedEvent]) -> None:
        rows = [
            {"interaction_id": interaction_id, "seq": e.seq, "event_type": e.event_type, "payload": e.payload}
            for e in events
        ]
        async with self.engine.begin() as conn:
            await conn.execute(
                update(interactions)
                .where(interactions.c.id == interaction_id)
                .values(
                    status=final.status,
                    updated_at=final.updated_at,
                    steps=final.steps,
                    usage=final.usage,
                    errors=final.errors,
                )
            )
            if rows:
                await conn.execute(insert(interaction_events), rows)

    async def get(self, interaction_id: str, owner: str, now: float) -> StoredInteraction | None:
        query = select(interactions).where(
            and_(interactions.c.id == interaction_id, interactions.c.owner == owner, interactions.c.expires_at > now)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row_to_record(row) if row else None

    async def chain(self, interaction_id: str, owner: str, now: float, limit: int) -> list[StoredInteraction]:
        async with self.engine.connect() as conn:
            links = (
                await conn.execute(_CHAIN_SQL, {"id": interaction_id, "owner": owner, "now": now, "limit": limit})
            ).all()
            if not links:
                return []
            ids = [link.id for link in links]
            rows = (await conn.execute(select(interactions).where(interactions.c.id.in_(ids)))).all()
        by_id = {row._mapping["id"]: _row_to_record(row) for row in rows}
        records = [by_id[i] for i in ids]
        root_prev = records[0].previous_interaction_id
        if root_prev is not None:
            if len(records) > limit:
                raise ChainTooLong(f"the chain is longer than {limit} interactions")
            raise BrokenChain(root_prev)
        return records

    async def events(self, interaction_id: str, after: int) -> list[LoggedEvent]:
        query = (
            select(interaction_events.c.seq, interaction_events.c.event_type, interaction_events.c.payload)
            .where(and_(interaction_events.c.interaction_id == interaction_id, interaction_events.c.seq > after))
            .order_by(interaction_events.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [LoggedEvent.build(r.seq, r.event_type, bytes(r.payload)) for r in rows]

    async def delete(self, interaction_id: str, owner: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(interactions).where(and_(interactions.c.id == interaction_id, interactions.c.owner == owner))
            )
            if result.rowcount:
                events_of = interaction_events.c.interaction_id == interaction_id
                await conn.execute(delete(interaction_events).where(events_of))
        return bool(result.rowcount)

    async def count(self, owner: str, now: float) -> int:
        query = select(func.count()).where(and_(interactions.c.owner == owner, interactions.c.expires_at > now))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def sweep(self, now: float) -> int:
        expired = select(interactions.c.id).where(interactions.c.expires_at <= now)
        async with self.engine.begin() as conn:
            await conn.execute(delete(interaction_events).where(interaction_events.c.interaction_id.in_(expired)))
            result = await conn.execute(delete(interactions).where(interactions.c.expires_at <= now))
        return int(result.rowcount or 0)

    async def unfinished(self) -> list[StoredInteraction]:
        query = select(interactions).where(interactions.c.status.in_(("in_progress", "queued")))
        async with self.engine.connect() as conn:
            return [_row_to_record(row) for row in (await conn.execute(query)).all()]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
