"""The file search stores of every owner in the server's own PostgreSQL database (``store.url``), so that every
replica sees the same stores, documents, chunks, operations and uploads (pg_uploads.py).

Keyword ranking is BM25 computed in SQL over PostgreSQL's full-text search: each chunk's ``terms`` is its
``to_tsvector('english', text)`` (a generated column, GIN-indexed), a query matches any of its words (an OR
``tsquery``), and the chunks that match are scored with the term frequencies their tsvector holds, each term's
document frequency among the chunks searched, and the chunks' lengths (k1 1.2, b 0.75, Lucene's IDF).
``ts_rank_cd`` was the alternative: it weighs every query word alike (no IDF), so a common word counts as much as
a rare one, and it measured worse (docs/tools.md). Embeddings are float32 ``bytea``; cosine is computed in Python
over a search's chunks, as on SQLite (pgvector is not something the install script can count on).

Deletions cascade (store → documents → chunks) through foreign keys, and a document being indexed is locked
(``FOR UPDATE``) while its chunks go in, so that a delete on another replica waits for it and then removes them.
The tables are made by the first server to use them, under the store's schema lock (replicas starting together
take turns). Synchronous, like the SQLite catalog: callers run it in a thread.
"""

from __future__ import annotations

import json
import re
import string
import threading
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from ..store.tables import schema_lock
from .catalog import Found, Record, StoreGone
from .chunking import Chunk

# ASCII punctuation is a space to the index, as to FTS5's unicode61 tokenizer: PostgreSQL's parser would keep
# ``store.url``, ``docs/tools.md`` or ``src/openinteractions/filestores/`` as one lexeme each, which no query
# word matches (recall@5 on bench/file_search_keyword_ranking.py's docs corpus: 0.80 so, 0.87 with this).
# translate(), not a regular expression: a regex's classes follow the database's locale.
_WORDS_OF_TEXT = f"translate(text, $p${string.punctuation}$p$, repeat(' ', {len(string.punctuation)}))"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS file_search_stores (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, display_name TEXT NOT NULL, embedding_model TEXT NOT NULL,
        create_time TEXT NOT NULL, update_time TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS file_search_stores_owner ON file_search_stores (owner, create_time)",
    """CREATE TABLE IF NOT EXISTS file_search_documents (
        name TEXT PRIMARY KEY, store TEXT NOT NULL REFERENCES file_search_stores (name) ON DELETE CASCADE,
        display_name TEXT NOT NULL, mime_type TEXT NOT NULL, size_bytes BIGINT NOT NULL, metadata TEXT NOT NULL,
        state TEXT NOT NULL, error TEXT, create_time TEXT NOT NULL, update_time TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS file_search_documents_store ON file_search_documents (store, create_time)",
    """CREATE TABLE IF NOT EXISTS file_search_chunks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        document TEXT NOT NULL REFERENCES file_search_documents (name) ON DELETE CASCADE,
        store TEXT NOT NULL, ordinal INTEGER NOT NULL, page INTEGER, text TEXT NOT NULL,
        words INTEGER NOT NULL,
        terms TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', """
    + _WORDS_OF_TEXT
    + """)) STORED,
        vector BYTEA)""",
    "CREATE INDEX IF NOT EXISTS file_search_chunks_document ON file_search_chunks (document)",
    # BM25's statistics (chunks searched, their mean length) are read from this index alone.
    "CREATE INDEX IF NOT EXISTS file_search_chunks_store ON file_search_chunks (store) INCLUDE (words)",
    "CREATE INDEX IF NOT EXISTS file_search_chunks_terms ON file_search_chunks USING GIN (terms)",
    """CREATE TABLE IF NOT EXISTS file_search_indexing (
        document TEXT PRIMARY KEY REFERENCES file_search_documents (name) ON DELETE CASCADE,
        operation TEXT NOT NULL, owner TEXT NOT NULL, server TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS file_search_operations (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS file_search_uploads (
        token TEXT PRIMARY KEY, owner TEXT NOT NULL, store TEXT NOT NULL, size BIGINT NOT NULL,
        mime_type TEXT NOT NULL, display_name TEXT NOT NULL, metadata TEXT NOT NULL,
        chunk_tokens INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL, received BIGINT NOT NULL,
        started DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS file_search_uploads_owner ON file_search_uploads (owner)",
    """CREATE TABLE IF NOT EXISTS file_search_upload_parts (
        token TEXT NOT NULL REFERENCES file_search_uploads (token) ON DELETE CASCADE,
        "offset" BIGINT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (token, "offset"))""",
)

# BM25 (k1 1.2, b 0.75) over the chunks of a search's scope ({scope}: a condition on ``c``): statistics first
# (how many chunks, their mean length), then the chunks that match any query word (the GIN index) with each
# query word's frequency in them (the positions its tsvector holds), its document frequency among them, and the
# score. A chunk's query words are picked out of its tsvector by weight (set on them, then filtered): an order
# faster than unnesting the whole tsvector and comparing each lexeme, where common words match many chunks.
_BM25 = """
WITH query AS (SELECT to_tsquery('english', :expression) AS q,
                      tsvector_to_array(to_tsvector('english', :words)) AS lexemes),
stats AS (SELECT count(*)::float8 AS n, greatest(avg(c.words), 1)::float8 AS mean_length
            FROM file_search_chunks c WHERE {scope}),
hits AS (SELECT c.id, c.words, t.lexeme, cardinality(t.positions)::float8 AS tf
           FROM file_search_chunks c CROSS JOIN query
                CROSS JOIN LATERAL unnest(ts_filter(setweight(c.terms, 'A', query.lexemes), '{{a}}')) t
          WHERE c.terms @@ query.q AND {scope}),
df AS (SELECT lexeme, count(*)::float8 AS df FROM hits GROUP BY lexeme)
SELECT hits.id FROM hits JOIN df USING (lexeme) CROSS JOIN stats
 GROUP BY hits.id
 ORDER BY sum(ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5))
              * hits.tf * 2.2 / (hits.tf + 1.2 * (0.25 + 0.75 * hits.words / stats.mean_length))) DESC, hits.id
 LIMIT :limit
"""


def query_words(query: str) -> list[str]:
    """The query's words, letters and digits only, so that none is ``tsquery`` syntax."""
    return list(dict.fromkeys(re.findall(r"[^\W_]+", query.lower())))


class PostgresCatalog:
    def __init__(self, url: str | URL) -> None:
        # Its own small pool on the store's database: catalog calls run in the default thread pool, the store's
        # in its own threads.
        self.engine: Engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
        self._ready = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, the tables made first (once: by the first call, which a database outage may delay)."""
        if not self._ready:
            with self._lock:
                if not self._ready:
                    with self.engine.begin() as conn:
                        schema_lock(conn)
                        for statement in _SCHEMA:
                            conn.execute(text(statement))
                    self._ready = True
        with self.engine.begin() as conn:
            yield conn

    def _all(self, sql: str, params: dict[str, Any]) -> Sequence[Any]:
        with self.begin() as conn:
            return conn.execute(text(sql), params).all()

    def _records(self, sql: str, params: dict[str, Any]) -> list[Record]:
        return [dict(row._mapping) for row in self._all(sql, params)]

    # stores

    def add_store(self, name: str, owner: str, display_name: str, embedding_model: str, now: str) -> None:
        with self.begin() as conn:
            conn.execute(
                text("INSERT INTO file_search_stores VALUES (:name, :owner, :display_name, :model, :now, :now)"),
                {"name": name, "owner": owner, "display_name": display_name, "model": embedding_model, "now": now},
            )

    def store(self, owner: str, name: str) -> Record | None:
        sql = "SELECT * FROM file_search_stores WHERE name = :name AND owner = :owner"
        return next(iter(self._records(sql, {"name": name, "owner": owner})), None)

    def stores(self, owner: str, offset: int, limit: int) -> list[Record]:
        sql = """SELECT * FROM file_search_stores WHERE owner = :owner ORDER BY create_time, name
                 LIMIT :limit OFFSET :offset"""
        return self._records(sql, {"owner": owner, "limit": limit, "offset": offset})

    def store_count(self, owner: str) -> int:
        return int(self._all("SELECT count(*) FROM file_search_stores WHERE owner = :owner", {"owner": owner})[0][0])

    def document_counts(self, store: str) -> dict[str, int]:
        sql = "SELECT state, count(*), sum(size_bytes) FROM file_search_documents WHERE store = :store GROUP BY state"
        rows = self._all(sql, {"store": store})
        counts = {row[0]: int(row[1]) for row in rows}
        counts["size_bytes"] = sum(int(row[2] or 0) for row in rows if row[0] == "STATE_ACTIVE")
        return counts

    def remove_store(self, name: str) -> None:
        with self.begin() as conn:  # its documents and their chunks go with it
            conn.execute(text("DELETE FROM file_search_stores WHERE name = :name"), {"name": name})

    # documents

    def add_document(self, name: str, store: str, display_name: str, mime_type: str, size: int,
                     metadata: list[dict[str, Any]], now: str) -> None:  # fmt: skip
        values = {"name": name, "store": store, "display_name": display_name, "mime_type": mime_type,
                  "size": size, "metadata": json.dumps(metadata), "now": now}  # fmt: skip
        try:
            with self.begin() as conn:
                conn.execute(text("""INSERT INTO file_search_documents VALUES (:name, :store, :display_name,
                    :mime_type, :size, :metadata, 'STATE_PENDING', NULL, :now, :now)"""), values)  # fmt: skip
        except IntegrityError as exc:
            if "foreign key" not in str(exc.orig):
                raise
            raise StoreGone(store) from None

    def activate(self, document: str, chunks: list[Chunk], vectors: list[list[float]] | None, now: str) -> bool:
        with self.begin() as conn:
            store = conn.execute(text("SELECT store FROM file_search_documents WHERE name = :name FOR UPDATE"),
                                 {"name": document}).scalar()  # fmt: skip
            if store is None:
                return False
            rows = [
                {"document": document, "store": store, "ordinal": ordinal, "page": chunk.page, "text": chunk.text,
                 "words": len(re.findall(r"\w+", chunk.text)),
                 "vector": array("f", vectors[ordinal]).tobytes() if vectors is not None else None}
                for ordinal, chunk in enumerate(chunks)
            ]  # fmt: skip
            if rows:
                conn.execute(text("""INSERT INTO file_search_chunks (document, store, ordinal, page, text, words,
                    vector) VALUES (:document, :store, :ordinal, :page, :text, :words, :vector)"""), rows)  # fmt: skip
            conn.execute(text("""UPDATE file_search_documents SET state = 'STATE_ACTIVE', update_time = :now
                                  WHERE name = :name"""), {"now": now, "name": document})  # fmt: skip
        return True

    def fail(self, document: str, error: str, now: str) -> None:
        with self.begin() as conn:
            conn.execute(text("""UPDATE file_search_documents SET state = 'STATE_FAILED', error = :error,
                                 update_time = :now WHERE name = :name"""),
                         {"error": error.replace("\x00", ""), "now": now, "name": document})  # fmt: skip

    def document(self, store: str, name: str) -> Record | None:
        sql = "SELECT * FROM file_search_documents WHERE name = :name AND store = :store"
        return next(iter(self._records(sql, {"name": name, "store": store})), None)

    def documents(self, store: str, offset: int, limit: int) -> list[Record]:
        sql = """SELECT * FROM file_search_documents WHERE store = :store ORDER BY create_time, name
                 LIMIT :limit OFFSET :offset"""
        return self._records(sql, {"store": store, "limit": limit, "offset": offset})

    def active_documents(self, stores: list[str]) -> list[tuple[str, str]]:
        sql = """SELECT name, metadata FROM file_search_documents
                  WHERE store = ANY(:stores) AND state = 'STATE_ACTIVE'"""
        return [(row[0], row[1]) for row in self._all(sql, {"stores": stores})]

    def chunk_count(self, document: str) -> int:
        sql = "SELECT count(*) FROM file_search_chunks WHERE document = :document"
        return int(self._all(sql, {"document": document})[0][0])

    def remove_document(self, name: str) -> None:
        with self.begin() as conn:  # its chunks go with it; one being indexed, once they are in
            conn.execute(text("DELETE FROM file_search_documents WHERE name = :name"), {"name": name})

    # operations

    def begin_indexing(self, document: str, operation: str, owner: str, server: str) -> None:
        with self.begin() as conn:
            conn.execute(text("""INSERT INTO file_search_indexing VALUES (:document, :operation, :owner, :server)
                                 ON CONFLICT (document) DO UPDATE SET server = excluded.server"""),
                         {"document": document, "operation": operation, "owner": owner, "server": server})  # fmt: skip

    def end_indexing(self, document: str) -> None:
        with self.begin() as conn:
            conn.execute(text("DELETE FROM file_search_indexing WHERE document = :document"), {"document": document})

    def orphans(self, alive: set[str]) -> list[tuple[str, str, str]]:
        rows = self._all("SELECT document, operation, owner, server FROM file_search_indexing", {})
        return [(row[0], row[1], row[2]) for row in rows if row[3] not in alive]

    def put_operation(self, name: str, owner: str, body: dict[str, Any]) -> None:
        with self.begin() as conn:
            conn.execute(text("""INSERT INTO file_search_operations VALUES (:name, :owner, :body)
                                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, body = excluded.body"""),
                         {"name": name, "owner": owner, "body": json.dumps(body)})  # fmt: skip

    def operation(self, owner: str, name: str) -> dict[str, Any] | None:
        rows = self._all("SELECT body FROM file_search_operations WHERE name = :name AND owner = :owner",
                         {"name": name, "owner": owner})  # fmt: skip
        return dict(json.loads(rows[0][0])) if rows else None

    # retrieval

    def bm25(self, stores: list[str], documents: list[str] | None, query: str, limit: int) -> list[int]:
        words = query_words(query)
        if not words or not stores:
            return []
        scope, params = _scope(stores, documents)
        params.update({"expression": " | ".join(words), "words": " ".join(words), "limit": limit})
        return [row[0] for row in self._all(_BM25.format(scope=scope), params)]

    def vectors(self, stores: list[str], documents: list[str] | None) -> list[tuple[int, bytes]]:
        scope, params = _scope(stores, documents)
        sql = f"SELECT c.id, c.vector FROM file_search_chunks c WHERE {scope} AND c.vector IS NOT NULL"
        return [(row[0], bytes(row[1])) for row in self._all(sql, params)]

    def found(self, ids: list[int]) -> list[Found]:
        if not ids:
            return []
        sql = """SELECT c.id, c.text, c.page, c.document, c.store, d.display_name, d.metadata
                   FROM file_search_chunks c JOIN file_search_documents d ON d.name = c.document
                  WHERE c.id = ANY(:ids)"""
        rows = {row[0]: row for row in self._all(sql, {"ids": ids})}
        return [Found(r[0], r[1], r[2], r[3], r[5], r[4], json.loads(r[6])) for r in (rows.get(i) for i in ids) if r]


def _scope(stores: list[str], documents: list[str] | None) -> tuple[str, dict[str, Any]]:
    if documents is None:
        return "c.store = ANY(:stores)", {"stores": stores}
    return "c.store = ANY(:stores) AND c.document = ANY(:documents)", {"stores": stores, "documents": documents}
