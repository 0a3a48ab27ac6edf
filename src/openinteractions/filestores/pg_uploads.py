"""Resumable uploads kept in PostgreSQL (uploads.py), so that any replica takes an upload's next bytes: one row
per upload, one row per piece of its bytes. A piece is taken at the offset the upload's row has reached, the row
locked (``FOR UPDATE``) for the transaction, so that two requests of one upload, on two replicas, take turns as
they do in one process. The pieces are put together, and the rows deleted, by the request that finalises."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from sqlalchemy import Connection, text

from .pg_catalog import PostgresCatalog
from .uploads import (
    MAX_UPLOADS,
    MAX_UPLOADS_PER_OWNER,
    UPLOAD_SECONDS,
    Upload,
    no_such_upload,
    too_long,
    too_many,
    wrong_offset,
)

# The advisory lock of an upload's start ("oi_f" "upld"): a key of two ints, which store/replicas.py's list of
# live servers (the locks of one bigint key) leaves out.
_STARTS_LOCK = {"high": 0x6F695F66, "low": 0x75706C64}


class SharedUploads:
    def __init__(self, catalog: PostgresCatalog) -> None:
        self._catalog = catalog

    async def start(self, upload: Upload) -> str:
        return await asyncio.to_thread(self._start, upload)

    async def send(self, token: str, offset: int, data: bytes, finalize: bool) -> tuple[Upload, bytes] | None:
        return await asyncio.to_thread(self._send, token, offset, data, finalize)

    def close(self) -> None:
        pass  # the catalog's engine is closed with it

    def _start(self, upload: Upload) -> str:
        token = secrets.token_urlsafe(24)
        with self._catalog.begin() as conn:
            # One start at a time, so that two replicas cannot both take the last place under the limits (the
            # bytes of uploads under way need not wait for it).
            conn.execute(text("SELECT pg_advisory_xact_lock(:high, :low)"), _STARTS_LOCK)
            conn.execute(text("DELETE FROM file_search_uploads WHERE started < :oldest"),
                         {"oldest": time.time() - UPLOAD_SECONDS})  # fmt: skip
            everyone, mine = conn.execute(
                text("SELECT count(*), count(*) FILTER (WHERE owner = :owner) FROM file_search_uploads"),
                {"owner": upload.owner},
            ).one()
            if everyone >= MAX_UPLOADS or mine >= MAX_UPLOADS_PER_OWNER:
                raise too_many()
            tokens, overlap = upload.chunking
            conn.execute(text("""INSERT INTO file_search_uploads VALUES (:token, :owner, :store, :size, :mime_type,
                :display_name, :metadata, :tokens, :overlap, 0, :started)"""),
                {"token": token, "owner": upload.owner, "store": upload.store, "size": upload.size,
                 "mime_type": upload.mime_type, "display_name": upload.display_name,
                 "metadata": json.dumps(upload.metadata), "tokens": tokens, "overlap": overlap,
                 "started": time.time()})  # fmt: skip
        return token

    def _send(self, token: str, offset: int, data: bytes, finalize: bool) -> tuple[Upload, bytes] | None:
        with self._catalog.begin() as conn:
            row = conn.execute(text("SELECT * FROM file_search_uploads WHERE token = :token FOR UPDATE"),
                               {"token": token}).one_or_none()  # fmt: skip
            if row is None or row.started < time.time() - UPLOAD_SECONDS:
                raise no_such_upload()
            if offset != row.received:
                raise wrong_offset(row.received, offset)
            overflows = row.received + len(data) > row.size
            if not overflows:
                conn.execute(text('INSERT INTO file_search_upload_parts VALUES (:token, :offset, :data)'),
                             {"token": token, "offset": offset, "data": data})  # fmt: skip
                conn.execute(text("UPDATE file_search_uploads SET received = :received WHERE token = :token"),
                             {"received": row.received + len(data), "token": token})  # fmt: skip
            content = _content(conn, token) if finalize and not overflows else None
            if overflows or content is not None:
                conn.execute(text("DELETE FROM file_search_uploads WHERE token = :token"), {"token": token})
        if overflows:
            raise too_long(row.size)
        if content is None:
            return None
        upload = Upload(row.owner, row.store, row.size, row.mime_type, row.display_name, json.loads(row.metadata),
                        (row.chunk_tokens, row.chunk_overlap))  # fmt: skip
        return upload, content


def _content(conn: Connection, token: str) -> bytes:
    rows: Any = conn.execute(text('SELECT data FROM file_search_upload_parts WHERE token = :token ORDER BY "offset"'),
                             {"token": token})  # fmt: skip
    return b"".join(bytes(row[0]) for row in rows)
