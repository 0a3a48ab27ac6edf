"""The store's tables, and the migration of a database made by an earlier version.

``interactions`` holds one row per interaction: the run's recipe (what it takes to start it again), its lease,
and, once it ends, its result and whole event log as one blob. ``events`` holds the events of runs that have
not ended, one row per event, appended as they happen: the durable log a run continues from after a crash.
When a run ends its events move into the row's blob (one write) and their rows are deleted. ``media`` holds
each image those logs and rows show once, by content, and ``media_refs`` which interactions show it
(store/media.py).
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

logger = logging.getLogger(__name__)
metadata = MetaData()
UNFINISHED = text("status IN ('in_progress', 'queued')")

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
    # The bytes of request, input_steps, steps, usage, errors and events as stored: the storage quota's and the
    # chain bound's measure.
    Column("size", BigInteger, nullable=False, server_default=text("0")),
    Column("request", Text, nullable=False),
    Column("input_steps", Text, nullable=False),
    Column("steps", Text, nullable=False),
    Column("usage", Text),
    Column("errors", Text),
    # The run's recipe (engine/recipe.py, JSON) and its lease: which server runs it, until when (epoch s).
    Column("recipe", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    # When a cancel was asked for on a replica that does not run it (epoch s): its runner, or whoever takes the
    # run over, ends it ``cancelled``.
    Column("cancel_requested", Float),
    # Last: SQLite writes a long log as a zeroblob filled in place (store/blobs.py), which takes no memory only
    # as the record's last column; with a column after it, SQLite built the record with 64 MiB of zeros.
    Column("events", LargeBinary),
    Index("ix_interactions_owner_created", "owner", "created_at"),
    Index("ix_interactions_expires", "expires_at"),
    # Replicas look for runs to take over every second: only the unfinished rows are indexed.
    Index("ix_interactions_unfinished", "lease_until", postgresql_where=UNFINISHED, sqlite_where=UNFINISHED),
)
events = Table(
    "events",
    metadata,
    Column("interaction_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("frame", LargeBinary, nullable=False),
    # SQLite: one b-tree keyed by (interaction_id, seq), not a table plus its key's index, so that a commit of
    # events writes one page less (a database made before is rebuilt at start, see _events_without_rowid).
    sqlite_with_rowid=False,
)
# An image's bytes, once however many interactions show it: logs and rows hold ``\x01sha256:<digest>`` in place
# of its base64 data (store/media.py).
media = Table(
    "media",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 of the bytes, hex
    Column("mime_type", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)
# Which interactions show an image (in their event log or their steps): an image none shows is deleted.
media_refs = Table(
    "media_refs",
    metadata,
    Column("interaction_id", String(64), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Index("ix_media_refs_digest", "digest"),
)
# Secrets every replica must share (the thought-signing key when none is configured), made by the first server.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
# Columns added after the first release, with their SQL type: a database made before gets them (nullable),
# after its events column, where a long log's write costs SQLite the log's size in memory once more.
_ADDED_COLUMNS = {
    "recipe": "TEXT",
    "lease_owner": "VARCHAR(64)",
    "lease_until": "FLOAT",
    "cancel_requested": "FLOAT",
}
_UNFINISHED_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_interactions_unfinished ON interactions (lease_until) "
    "WHERE status IN ('in_progress', 'queued')"
)

# A database made before the size column gets it last (ALTER TABLE), where SQLite reaches it only by reading
# through the row's overflow pages: there, an owner's bytes and a chain's bytes are summed from these covering
# indexes instead. A new table has it among the small columns at the start of the row, and needs neither (each
# would cost every write an index update).
_APPENDED_SIZE_INDEXES = (
    "CREATE INDEX ix_interactions_owner_size ON interactions (owner, expires_at, size)",
    "CREATE INDEX ix_interactions_links ON interactions (id, owner, expires_at, previous_interaction_id, size)",
)

# The walk starts from a row that names the first link as the previous one, so that every link, the first too,
# is found the same way (in a database whose size column was appended, through its covering index).
CHAIN_SQL = text(
    """
    WITH RECURSIVE chain(id, prev, depth, total) AS (
        SELECT CAST(NULL AS VARCHAR(64)), CAST(:id AS VARCHAR(64)), -1, CAST(0 AS BIGINT)
        UNION ALL
        SELECT i.id, i.previous_interaction_id, chain.depth + 1, chain.total + i.size
          FROM interactions i JOIN chain ON i.id = chain.prev
         WHERE i.owner = :owner AND i.expires_at > :now AND chain.depth < :limit AND chain.total <= :max_bytes
    )
    SELECT id, depth, total FROM chain WHERE depth >= 0 ORDER BY depth DESC
    """
)


_SCHEMA_LOCK = 0x6F695F736368656D  # "oi_schem": PostgreSQL advisory lock key, held while the schema is made


def schema_lock(conn: Connection) -> None:
    """Replicas starting together on an empty PostgreSQL database would race to create the same tables (one
    fails on a duplicate type): they take turns, for the transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})


def create_or_migrate(engine: Engine) -> None:
    """Create the tables; a database made before the size column gets it, filled in from what its rows store,
    and its indexes, in one transaction (once: a large database takes a while)."""
    with engine.begin() as conn:
        schema_lock(conn)
        metadata.create_all(conn)
        if "size" not in {column["name"] for column in inspect(conn).get_columns("interactions")}:
            logger.warning("adding the size column to the stored interactions (once; a large store takes a while)")
            conn.execute(text("ALTER TABLE interactions ADD COLUMN size BIGINT NOT NULL DEFAULT 0"))
            measure = "octet_length({})" if conn.dialect.name == "postgresql" else "length(CAST({} AS BLOB))"
            columns = ("request", "input_steps", "steps", "usage", "errors", "events")
            total = " + ".join(f"coalesce({measure.format(name)}, 0)" for name in columns)
            conn.execute(text(f"UPDATE interactions SET size = {total}"))
            for index in _APPENDED_SIZE_INDEXES:
                conn.execute(text(index))
        present = {column["name"] for column in inspect(conn).get_columns("interactions")}
        for name, sql_type in _ADDED_COLUMNS.items():
            if name not in present:
                conn.execute(text(f"ALTER TABLE interactions ADD COLUMN {name} {sql_type}"))
        conn.execute(text(_UNFINISHED_INDEX))  # a table made before it has the others
        _events_without_rowid(conn)


def _events_without_rowid(conn: Connection) -> None:
    """SQLite: an events table made with a rowid is rebuilt without one. It holds only the events of runs that
    have not ended: few rows. The copy comes first, so that the drop and the rename are in its transaction
    (Python's sqlite3 begins one before a write, not before DDL)."""
    if conn.dialect.name != "sqlite":
        return
    made = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'")).scalar_one()
    if "WITHOUT ROWID" in made.upper():
        return
    rebuilt = events.to_metadata(MetaData(), name="events_rebuilt")
    rebuilt.drop(conn, checkfirst=True)  # left by a start that stopped before its commit
    rebuilt.create(conn)
    columns = "interaction_id, seq, frame"
    conn.execute(text(f"INSERT INTO events_rebuilt ({columns}) SELECT {columns} FROM events"))
    conn.execute(text("DROP TABLE events"))
    conn.execute(text("ALTER TABLE events_rebuilt RENAME TO events"))
