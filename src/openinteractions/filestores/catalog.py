"""The catalog of the file search stores: what the service (service.py) and retrieval (retrieval.py) ask of it.
Which one a server gets follows its store (service.py picks it): where the store is SQLite, a SQLite file of its
own (sqlite_catalog.py: one server); where it is PostgreSQL, tables in that database (pg_catalog.py), so that
every replica sees the same stores, documents, chunks and operations.

Every method is synchronous: callers run it in a thread. A store or document is a ``Record``, its columns by
name: a store's ``name``, ``owner``, ``display_name``, ``embedding_model``, ``create_time``, ``update_time``; a
document's ``name``, ``store``, ``display_name``, ``mime_type``, ``size_bytes``, ``metadata`` (JSON text),
``state``, ``error``, ``create_time``, ``update_time``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .chunking import Chunk

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Found:
    """A chunk that a search found, with what a citation needs of its document."""

    id: int
    text: str
    page: int | None
    document: str
    document_title: str
    store: str
    metadata: list[dict[str, Any]]


class StoreGone(LookupError):
    """The store a document was being added to was deleted meanwhile (by another replica)."""


class Catalog(Protocol):
    def close(self) -> None: ...

    # stores

    def add_store(self, name: str, owner: str, display_name: str, embedding_model: str, now: str) -> None: ...

    def store(self, owner: str, name: str) -> Record | None: ...

    def stores(self, owner: str, offset: int, limit: int) -> list[Record]: ...

    def store_count(self, owner: str) -> int: ...

    def document_counts(self, store: str) -> dict[str, int]:
        """Documents by state, and ``size_bytes``: the sum of the active documents' sizes."""
        ...

    def remove_store(self, name: str) -> None: ...

    # documents

    def add_document(self, name: str, store: str, display_name: str, mime_type: str, size: int,
                     metadata: list[dict[str, Any]], now: str) -> None:  # fmt: skip
        """A pending document; ``StoreGone`` where the store is no longer there."""
        ...

    def activate(self, document: str, chunks: list[Chunk], vectors: list[list[float]] | None, now: str) -> bool:
        """The document's chunks are stored and it becomes active; False if it was deleted meanwhile."""
        ...

    def fail(self, document: str, error: str, now: str) -> None: ...

    def document(self, store: str, name: str) -> Record | None: ...

    def documents(self, store: str, offset: int, limit: int) -> list[Record]: ...

    def active_documents(self, stores: list[str]) -> list[tuple[str, str]]:
        """(name, metadata JSON) of the active documents of ``stores``."""
        ...

    def chunk_count(self, document: str) -> int: ...

    def remove_document(self, name: str) -> None: ...

    # operations

    def begin_indexing(self, document: str, operation: str, owner: str, server: str) -> None:
        """``server`` indexes ``document`` (from bytes only it holds) for ``operation``."""

    def end_indexing(self, document: str) -> None:
        """The document is indexed, or failed."""

    def orphans(self, alive: set[str]) -> list[tuple[str, str, str]]:
        """(document, operation, owner) of each indexing whose server is not in ``alive``."""
        ...

    def put_operation(self, name: str, owner: str, body: dict[str, Any]) -> None: ...

    def operation(self, owner: str, name: str) -> dict[str, Any] | None: ...

    # retrieval

    def bm25(self, stores: list[str], documents: list[str] | None, query: str, limit: int) -> list[int]:
        """Chunk ids of ``stores`` (of ``documents`` only, when given) by keyword relevance, best first."""
        ...

    def vectors(self, stores: list[str], documents: list[str] | None) -> list[tuple[int, bytes]]:
        """(chunk id, float32 embedding) of every chunk of ``stores`` that has one."""
        ...

    def found(self, ids: list[int]) -> list[Found]:
        """The chunks ``ids`` in that order (those still there)."""
        ...
