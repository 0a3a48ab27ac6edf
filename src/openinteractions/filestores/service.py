"""``FileStores``: the fileSearchStores resource of every owner, in the shapes of Google's REST API (camelCase, as
google-genai reads them): stores, their documents, uploads and the operations that index them, and the search
that the file_search tool runs. Every method takes the caller's owner; another owner's store is not found.
Where they are kept follows the server's store (catalog.py): SQLite, or PostgreSQL shared by every replica."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from ..config import FileSearchSettings
from ..engine.documents import Unreadable
from ..errors import ApiError, failed_precondition, invalid_argument, not_found
from .catalog import Catalog, Found, Record, StoreGone
from .chunking import chunk_document
from .embeddings import EmbeddingError, embedder_for
from .metadata_filter import parse
from .retrieval import Retrieval
from .uploads import LocalUploads, Upload, UploadSessions

logger = logging.getLogger(__name__)
STORE_PREFIX = "fileSearchStores/"
_UPLOAD_RESPONSE = "type.googleapis.com/google.ai.generativelanguage.v1beta.UploadToFileSearchStoreResponse"
_MAX_PAGE = 100
T = TypeVar("T")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _new_id(display_name: str = "") -> str:
    """``my-notes-k3j9x0q2lm7a``: the display name's slug, then random."""
    slug = re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")[:40]
    suffix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    return f"{slug}-{suffix}" if slug else suffix


def is_postgresql(database: str | URL | None) -> bool:
    return database is not None and make_url(database).get_backend_name() == "postgresql"


class FileStores:
    """``database``: the server's store (``store.url``; None: its SQLite file). On PostgreSQL the catalog and
    the uploads are kept there; otherwise in ``file_search.db`` and this process, beside the data directory's
    SQLite store. They are opened on first use, so that the server can name its database after the tool's
    provision built this (``use_database``)."""

    def __init__(self, settings: FileSearchSettings, data_dir: Path, database: str | URL | None = None) -> None:
        self.settings = settings
        self.embedder, self.embedder_problem = embedder_for(settings)
        self._data_dir = data_dir
        self._database = database
        self._opened: tuple[Catalog, UploadSessions, Retrieval] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._server = ""  # the server that indexes what is uploaded to it (serve_as)
        self._alive: Callable[[], Awaitable[set[str]]] | None = None

    def use_database(self, database: str | URL | None) -> None:
        """The server's store database, named before the stores are first used."""
        if self._opened is not None:
            raise RuntimeError("the file search stores are open already")
        self._database = database

    def serve_as(self, server: str, alive: Callable[[], Awaitable[set[str]]]) -> None:
        """Index as ``server``; ``alive`` answers which servers are alive (every replica's, on PostgreSQL)."""
        self._server, self._alive = server, alive

    async def sweep_orphans(self) -> int:
        """A document whose indexing server died (its bytes went with it) fails, and its operation ends with
        an error that says so: nothing is left pending for ever. How many were found."""
        if self._alive is None:
            return 0
        orphans = await self._db(self.catalog.orphans, await self._alive())
        for document, operation, owner in orphans:
            message = "the server indexing this document stopped before it finished: upload it again"
            await self._db(self.catalog.fail, document, message, now())
            body = {"name": operation, "done": True, "error": {"code": 14, "message": message}}
            await self._db(self.catalog.put_operation, operation, owner, body)
            await self._db(self.catalog.end_indexing, document)
        return len(orphans)

    def _open(self) -> tuple[Catalog, UploadSessions, Retrieval]:
        if self._opened is None:
            catalog: Catalog
            uploads: UploadSessions
            if is_postgresql(self._database):
                from .pg_catalog import PostgresCatalog
                from .pg_uploads import SharedUploads

                assert self._database is not None
                shared = PostgresCatalog(self._database)
                catalog, uploads = shared, SharedUploads(shared)
            else:
                from .sqlite_catalog import SqliteCatalog

                catalog = SqliteCatalog(self._data_dir / "file_search.db")
                uploads = LocalUploads(self._data_dir / "file_search_uploads")
            self._opened = catalog, uploads, Retrieval(catalog, self.embedder, self.settings.rrf_k)
        return self._opened

    @property
    def catalog(self) -> Catalog:
        return self._open()[0]

    @property
    def uploads(self) -> UploadSessions:
        return self._open()[1]

    @property
    def retrieval(self) -> Retrieval:
        return self._open()[2]

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._opened is not None:
            self._opened[1].close()
            self._opened[0].close()

    async def _db(self, call: Callable[..., T], *args: Any) -> T:
        """A catalog call, in a thread."""
        return await self._db_async(asyncio.to_thread(call, *args))

    async def _db_async(self, work: Awaitable[T]) -> T:
        """A database error as an ``ApiError`` (``_unavailable``), also for the file_search tool, which reports
        one as its result."""
        try:
            return await work
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from exc

    @property
    def embedding_model(self) -> str:
        return self.embedder.name if self.embedder is not None else "bm25"

    # ---- stores ------------------------------------------------------------------------------------------------

    async def create_store(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        display_name = _string(body, "displayName", 512)
        if await self._db(self.catalog.store_count, owner) >= self.settings.max_stores_per_owner:
            raise ApiError(429, f"at most {self.settings.max_stores_per_owner} file search stores per key "
                                "(tools.file_search.max_stores_per_owner)")  # fmt: skip
        name = STORE_PREFIX + _new_id(display_name)
        await self._db(self.catalog.add_store, name, owner, display_name, self.embedding_model, now())
        return await self.get_store(owner, name)

    async def get_store(self, owner: str, name: str) -> dict[str, Any]:
        row = await self._store(owner, name)
        counts = await self._db(self.catalog.document_counts, row["name"])
        return _store_resource(row, counts)

    async def list_stores(self, owner: str, page_size: int | None, page_token: str | None) -> dict[str, Any]:
        offset, size = _page(page_size, page_token)
        rows = await self._db(self.catalog.stores, owner, offset, size + 1)
        stores = [_store_resource(r, await self._db(self.catalog.document_counts, r["name"])) for r in rows]
        return _listing("fileSearchStores", stores, offset, size)

    async def delete_store(self, owner: str, name: str, force: bool) -> None:
        row = await self._store(owner, name)
        counts = await self._db(self.catalog.document_counts, row["name"])
        if not force and any(v for k, v in counts.items() if k != "size_bytes"):
            raise failed_precondition(f"{name} has documents: delete them first, or pass force=true")
        await self._db(self.catalog.remove_store, row["name"])

    async def _store(self, owner: str, name: str) -> Record:
        row = await self._db(self.catalog.store, owner, name)
        if row is None:
            raise not_found(f"no such file search store: {name}")
        return row

    # ---- documents ---------------------------------------------------------------------------------------------

    async def get_document(self, owner: str, name: str) -> dict[str, Any]:
        return _document_resource(await self._document(owner, name))

    async def list_documents(self, owner: str, store: str, size: int | None, token: str | None) -> dict[str, Any]:
        await self._store(owner, store)
        offset, limit = _page(size, token)
        rows = await self._db(self.catalog.documents, store, offset, limit + 1)
        return _listing("documents", [_document_resource(r) for r in rows], offset, limit)

    async def delete_document(self, owner: str, name: str, force: bool) -> None:
        row = await self._document(owner, name)
        chunks = await self._db(self.catalog.chunk_count, row["name"])
        if chunks and not force:
            raise failed_precondition(f"{name} has chunks: pass force=true to delete it with them")
        await self._db(self.catalog.remove_document, row["name"])

    async def _document(self, owner: str, name: str) -> Record:
        store, _, _ = name.partition("/documents/")
        await self._store(owner, store)
        row = await self._db(self.catalog.document, store, name)
        if row is None:
            raise not_found(f"no such document: {name}")
        return row

    # ---- uploads and operations --------------------------------------------------------------------------------

    async def start_upload(self, owner: str, store: str, body: dict[str, Any], size: int, mime_type: str,
                           file_name: str) -> str:  # fmt: skip
        """A resumable upload's first request; the token that its upload URL carries."""
        await self._store(owner, store)
        if size > self.settings.max_file_bytes:
            raise ApiError(413, f"the file is {size} bytes; at most {self.settings.max_file_bytes} "
                                "(tools.file_search.max_file_bytes)")  # fmt: skip
        upload = Upload(
            owner, store, size, _string(body, "mimeType", 255) or mime_type or "text/plain",
            _string(body, "displayName", 512) or file_name, _metadata(body.get("customMetadata")),
            self._chunking(body.get("chunkingConfig")),
        )  # fmt: skip
        return await self._db_async(self.uploads.start(upload))

    async def upload_bytes(self, token: str, offset: int, data: bytes, finalize: bool) -> dict[str, Any] | None:
        """A chunk of a resumable upload; the operation once it is finalised."""
        done = await self._db_async(self.uploads.send(token, offset, data, finalize))
        if done is None:
            return None
        return await self._ingest(*done)

    async def _ingest(self, upload: Upload, data: bytes) -> dict[str, Any]:
        document = f"{upload.store}/documents/{_new_id(upload.display_name)}"
        operation = f"{upload.store}/upload/operations/{_new_id()}"
        try:
            await self._db(self.catalog.add_document, document, upload.store, upload.display_name,
                           upload.mime_type, len(data), upload.metadata, now())  # fmt: skip
        except StoreGone:
            raise not_found(f"no such file search store: {upload.store}") from None
        response = {"@type": _UPLOAD_RESPONSE, "parent": upload.store, "documentName": document,
                    "mimeType": upload.mime_type, "sizeBytes": str(len(data))}  # fmt: skip
        await self._db(self.catalog.put_operation, operation, upload.owner, {"name": operation, "done": False})
        await self._db(self.catalog.begin_indexing, document, operation, upload.owner, self._server)
        task = asyncio.create_task(self._index(upload, data, document, operation, response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=self.settings.wait_seconds)
        return await self.get_operation(upload.owner, operation)

    async def _index(self, upload: Upload, data: bytes, document: str, operation: str,
                     response: dict[str, Any]) -> None:  # fmt: skip
        body: dict[str, Any] = {"name": operation, "done": True, "response": response}
        try:
            try:
                await self._chunk_and_store(upload, data, document)
            except (Unreadable, EmbeddingError) as exc:
                await self._db(self.catalog.fail, document, str(exc), now())
                body = {"name": operation, "done": True, "error": {"code": 3, "message": str(exc)}}
            await self._db(self.catalog.put_operation, operation, upload.owner, body)
            await self._db(self.catalog.end_indexing, document)
        except ApiError as exc:  # the database failed: the document stays pending, its operation not done
            logger.warning("file_search: indexing %s failed: %s", document, exc.message)

    async def _chunk_and_store(self, upload: Upload, data: bytes, document: str) -> None:
        tokens, overlap = upload.chunking
        chunks = await asyncio.to_thread(chunk_document, data, upload.mime_type, tokens, overlap)
        store = await self._db(self.catalog.store, upload.owner, upload.store)
        vectors = None
        if self.embedder is not None and store is not None and store["embedding_model"] == self.embedder.name:
            vectors = await self.embedder.passages([chunk.text for chunk in chunks])
        await self._db(self.catalog.activate, document, chunks, vectors, now())

    async def get_operation(self, owner: str, name: str) -> dict[str, Any]:
        body = await self._db(self.catalog.operation, owner, name)
        if body is None:
            raise not_found(f"no such operation: {name}")
        return body

    def _chunking(self, config: Any) -> tuple[int, int]:
        """(tokens per chunk, overlap) from a request's ``chunkingConfig`` or the settings."""
        tokens, overlap = self.settings.chunk_tokens, self.settings.chunk_overlap_tokens
        if config is None:
            return tokens, min(overlap, tokens - 1)
        space = config.get("whiteSpaceConfig") if isinstance(config, dict) else None
        if not isinstance(space, dict):
            raise invalid_argument("chunkingConfig takes whiteSpaceConfig {maxTokensPerChunk, maxOverlapTokens}")
        tokens = _whole(space.get("maxTokensPerChunk", tokens), "maxTokensPerChunk", 1, 2048)
        return tokens, _whole(
            space.get("maxOverlapTokens", min(overlap, tokens - 1)), "maxOverlapTokens", 0, tokens - 1
        )

    # ---- search ------------------------------------------------------------------------------------------------

    def missing_store(self, owner: str, names: list[str]) -> str | None:
        """The first of ``names`` that is not a store of ``owner``'s (a quick lookup, on the caller's thread)."""
        try:
            return next((name for name in names if self.catalog.store(owner, name) is None), None)
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from exc

    async def search(self, owner: str, names: list[str], query: str, top_k: int,
                     metadata_filter: str | None) -> list[Found]:  # fmt: skip
        rows = [await self._store(owner, name) for name in dict.fromkeys(names)]
        predicate = parse(metadata_filter) if metadata_filter else None
        embedded = [r["name"] for r in rows if self.embedder and r["embedding_model"] == self.embedder.name]
        return await self._db_async(self.retrieval.search([r["name"] for r in rows], embedded, query, top_k, predicate))


def _unavailable(exc: SQLAlchemyError) -> ApiError:
    """The database out of reach (a restart, a failover) is a 503, which a retry may get past; anything else a
    500."""
    status = 503 if isinstance(exc, OperationalError | InterfaceError) else 500
    return ApiError(status, f"the file search stores' database failed: {type(exc).__name__}")


def _store_resource(row: Record, counts: dict[str, int]) -> dict[str, Any]:
    resource = {"name": row["name"], "createTime": row["create_time"], "updateTime": row["update_time"],
                "embeddingModel": row["embedding_model"],
                "activeDocumentsCount": str(counts.get("STATE_ACTIVE", 0)),
                "pendingDocumentsCount": str(counts.get("STATE_PENDING", 0)),
                "failedDocumentsCount": str(counts.get("STATE_FAILED", 0)),
                "sizeBytes": str(counts.get("size_bytes", 0))}  # fmt: skip
    if row["display_name"]:
        resource["displayName"] = row["display_name"]
    return resource


def _document_resource(row: Record) -> dict[str, Any]:
    resource = {"name": row["name"], "displayName": row["display_name"], "state": row["state"],
                "sizeBytes": str(row["size_bytes"]), "mimeType": row["mime_type"],
                "createTime": row["create_time"], "updateTime": row["update_time"]}  # fmt: skip
    metadata = json.loads(row["metadata"])
    if metadata:
        resource["customMetadata"] = metadata
    if row["error"]:
        resource["error"] = {"code": 3, "message": row["error"]}
    return resource


def _page(page_size: int | None, page_token: str | None) -> tuple[int, int]:
    size = _MAX_PAGE if page_size is None or page_size <= 0 else min(page_size, _MAX_PAGE)
    if page_token and not page_token.isdigit():
        raise invalid_argument(f"'pageToken' {page_token!r} is not one this server gave")
    return int(page_token or 0), size


def _listing(key: str, items: list[dict[str, Any]], offset: int, size: int) -> dict[str, Any]:
    listing: dict[str, Any] = {key: items[:size]}
    if len(items) > size:
        listing["nextPageToken"] = str(offset + size)
    return listing


def _string(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise invalid_argument(f"'{key}' must be a string of at most {limit} characters, without NUL")
    return value


def _whole(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid_argument(f"'{key}' must be a whole number from {low} to {high}")
    return value


def _metadata(entries: Any) -> list[dict[str, Any]]:
    """``customMetadata``: at most 20 entries of key and one of stringValue, stringListValue, numericValue."""
    if entries is None:
        return []
    if not isinstance(entries, list) or len(entries) > 20:
        raise invalid_argument("'customMetadata' must be a list of at most 20 entries")
    checked = []
    for i, entry in enumerate(entries):
        values = [k for k in ("stringValue", "stringListValue", "numericValue") if k in (entry or {})]
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or len(values) != 1:
            raise invalid_argument(f"'customMetadata[{i}]' needs a key and one of stringValue, stringListValue, "
                                   "numericValue")  # fmt: skip
        value = entry[values[0]]
        valid = {
            "stringValue": isinstance(value, str),
            "numericValue": isinstance(value, int | float) and not isinstance(value, bool),
            "stringListValue": isinstance(value, dict) and all(isinstance(v, str) for v in value.get("values", [])),
        }[values[0]]
        if not valid:
            raise invalid_argument(f"'customMetadata[{i}].{values[0]}' has the wrong type")
        checked.append({"key": entry["key"], values[0]: value})
    return checked
