"""The file search stores of every owner, in one SQLite database beside the server's (``file_search.db``): the
catalog of a server whose store is SQLite (catalog.py).

A store belongs to the key that created it; its documents and their chunks belong to the store. Each chunk's
text is in an FTS5 table (BM25, as the local search index ranks) and its embedding, when the store has an
embedder, beside it as float32 bytes. Operations (upload, import) are kept with their owner.
Synchronous: callers run it in a thread; one connection, one lock.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .catalog import Found, Record, StoreGone
from .chunking import Chunk

_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS stores (name TEXT PRIMARY KEY, owner TEXT NOT NULL, display_name TEXT NOT NULL,
                                   embedding_model TEXT NOT NULL, create_time TEXT NOT NULL,
                                   update_time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS stores_owner ON stores (owner, create_time);
CREATE TABLE IF NOT EXISTS documents (name TEXT PRIMARY KEY, store TEXT NOT NULL, display_name TEXT NOT NULL,
                                      mime_type TEXT NOT NULL, size_bytes INTEGER NOT NULL,
                                      metadata TEXT NOT NULL, state TEXT NOT NULL, error TEXT,
                                      create_time TEXT NOT NULL, update_time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS documents_store ON documents (store, create_time);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, document TEXT NOT NULL, store TEXT NOT NULL,
                                   ordinal INTEGER NOT NULL, page INTEGER, text TEXT NOT NULL, vector BLOB);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document);
CREATE INDEX IF NOT EXISTS chunks_store ON chunks (store);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5(text, tokenize = 'porter unicode61');
CREATE TABLE IF NOT EXISTS operations (name TEXT PRIMARY KEY, owner TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS indexing (document TEXT PRIMARY KEY, operation TEXT NOT NULL, owner TEXT NOT NULL,
                                     server TEXT NOT NULL);
"""


def match_expression(query: str) -> str:
    """Any of the query's words, each quoted so that FTS5 syntax in a query is just text."""
    terms = re.findall(r"\w+", query.lower())
    return " OR ".join(f'"{term}"' for term in dict.fromkeys(terms))


class SqliteCatalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # stores

    def add_store(self, name: str, owner: str, display_name: str, embedding_model: str, now: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO stores VALUES (?, ?, ?, ?, ?, ?)", (name, owner, display_name, embedding_model,
                                                                        now, now))  # fmt: skip

    def store(self, owner: str, name: str) -> Record | None:
        rows = self._all("SELECT * FROM stores WHERE name = ? AND owner = ?", (name, owner))
        return dict(rows[0]) if rows else None

    def stores(self, owner: str, offset: int, limit: int) -> list[Record]:
        sql = "SELECT * FROM stores WHERE owner = ? ORDER BY create_time, name LIMIT ? OFFSET ?"
        return [dict(row) for row in self._all(sql, (owner, limit, offset))]

    def store_count(self, owner: str) -> int:
        return int(self._all("SELECT count(*) FROM stores WHERE owner = ?", (owner,))[0][0])

    def document_counts(self, store: str) -> dict[str, int]:
        rows = self._all("SELECT state, count(*), sum(size_bytes) FROM documents WHERE store = ? GROUP BY state",
                         (store,))  # fmt: skip
        counts = {row[0]: int(row[1]) for row in rows}
        counts["size_bytes"] = sum(int(row[2] or 0) for row in rows if row[0] == "STATE_ACTIVE")
        return counts

    def remove_store(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM chunk_text WHERE rowid IN (SELECT id FROM chunks WHERE store = ?)", (name,))
            db.execute("DELETE FROM chunks WHERE store = ?", (name,))
            db.execute("DELETE FROM documents WHERE store = ?", (name,))
            db.execute("DELETE FROM stores WHERE name = ?", (name,))

    # documents

    def add_document(self, name: str, store: str, display_name: str, mime_type: str, size: int,
                     metadata: list[dict[str, Any]], now: str) -> None:  # fmt: skip
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM stores WHERE name = ?", (store,)).fetchone() is None:
                raise StoreGone(store)
            db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, 'STATE_PENDING', NULL, ?, ?)",
                (name, store, display_name, mime_type, size, json.dumps(metadata), now, now),
            )

    def activate(self, document: str, chunks: list[Chunk], vectors: list[list[float]] | None, now: str) -> bool:
        with self._transaction() as db:
            row = db.execute("SELECT store FROM documents WHERE name = ?", (document,)).fetchone()
            if row is None:
                return False
            for ordinal, chunk in enumerate(chunks):
                vector = array("f", vectors[ordinal]).tobytes() if vectors is not None else None
                cursor = db.execute(
                    "INSERT INTO chunks (document, store, ordinal, page, text, vector) VALUES (?, ?, ?, ?, ?, ?)",
                    (document, row[0], ordinal, chunk.page, chunk.text, vector),
                )
                db.execute("INSERT INTO chunk_text (rowid, text) VALUES (?, ?)", (cursor.lastrowid, chunk.text))
            db.execute("UPDATE documents SET state = 'STATE_ACTIVE', update_time = ? WHERE name = ?", (now, document))
        return True

    def fail(self, document: str, error: str, now: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE documents SET state = 'STATE_FAILED', error = ?, update_time = ? WHERE name = ?",
                       (error, now, document))  # fmt: skip

    def document(self, store: str, name: str) -> Record | None:
        rows = self._all("SELECT * FROM documents WHERE name = ? AND store = ?", (name, store))
        return dict(rows[0]) if rows else None

    def documents(self, store: str, offset: int, limit: int) -> list[Record]:
        sql = "SELECT * FROM documents WHERE store = ? ORDER BY create_time, name LIMIT ? OFFSET ?"
        return [dict(row) for row in self._all(sql, (store, limit, offset))]

    def active_documents(self, stores: list[str]) -> list[tuple[str, str]]:
        marks = ",".join("?" * len(stores))
        sql = f"SELECT name, metadata FROM documents WHERE store IN ({marks}) AND state = 'STATE_ACTIVE'"
        return [(row[0], row[1]) for row in self._all(sql, stores)]

    def chunk_count(self, document: str) -> int:
        return int(self._all("SELECT count(*) FROM chunks WHERE document = ?", (document,))[0][0])

    def remove_document(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM chunk_text WHERE rowid IN (SELECT id FROM chunks WHERE document = ?)", (name,))
            db.execute("DELETE FROM chunks WHERE document = ?", (name,))
            db.execute("DELETE FROM documents WHERE name = ?", (name,))

    # operations

    def begin_indexing(self, document: str, operation: str, owner: str, server: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO indexing VALUES (?, ?, ?, ?)", (document, operation, owner, server))

    def end_indexing(self, document: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM indexing WHERE document = ?", (document,))

    def orphans(self, alive: set[str]) -> list[tuple[str, str, str]]:
        rows = self._all("SELECT document, operation, owner, server FROM indexing")
        return [(row[0], row[1], row[2]) for row in rows if row[3] not in alive]

    def put_operation(self, name: str, owner: str, body: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO operations VALUES (?, ?, ?)", (name, owner, json.dumps(body)))

    def operation(self, owner: str, name: str) -> dict[str, Any] | None:
        rows = self._all("SELECT body FROM operations WHERE name = ? AND owner = ?", (name, owner))
        return json.loads(rows[0][0]) if rows else None

    # retrieval

    def bm25(self, stores: list[str], documents: list[str] | None, query: str, limit: int) -> list[int]:
        """FTS5's BM25 (its statistics those of every store in the file)."""
        expression = match_expression(query)
        if not expression or not stores:
            return []
        where, params = _scope(stores, documents)
        sql = f"""SELECT c.id FROM chunk_text JOIN chunks c ON c.id = chunk_text.rowid
                  WHERE chunk_text MATCH ? AND {where} ORDER BY bm25(chunk_text) LIMIT ?"""
        return [row[0] for row in self._all(sql, [expression, *params, limit])]

    def vectors(self, stores: list[str], documents: list[str] | None) -> list[tuple[int, bytes]]:
        where, params = _scope(stores, documents)
        sql = f"SELECT c.id, c.vector FROM chunks c WHERE {where} AND c.vector IS NOT NULL"
        return [(row[0], row[1]) for row in self._all(sql, params)]

    def found(self, ids: list[int]) -> list[Found]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        sql = f"""SELECT c.id, c.text, c.page, c.document, c.store, d.display_name, d.metadata
                  FROM chunks c JOIN documents d ON d.name = c.document WHERE c.id IN ({marks})"""
        rows = {row[0]: row for row in self._all(sql, ids)}
        return [Found(r[0], r[1], r[2], r[3], r[5], r[4], json.loads(r[6])) for r in (rows.get(i) for i in ids) if r]


def _scope(stores: list[str], documents: list[str] | None) -> tuple[str, list[str]]:
    where = f"c.store IN ({','.join('?' * len(stores))})"
    params = list(stores)
    if documents is not None:
        where += f" AND c.document IN ({','.join('?' * len(documents)) or 'NULL'})"
        params += documents
    return where, params
