"""Resumable uploads to a file search store: started with the document's settings, their bytes arriving in order
at the offsets the client announces, finalised by the request that sends the last ones. A SQLite server keeps
them in its process (``LocalUploads``, the bytes spooled to disk); on PostgreSQL they are rows that every
replica sees (pg_uploads.py), so that an upload started on one replica can send its bytes to another.

The upload's token, which its upload URL carries, is its only credential (the SDK sends the bytes without the
API key)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ApiError, invalid_argument, not_found

MAX_UPLOADS = 64  # resumable uploads in flight, of all owners
MAX_UPLOADS_PER_OWNER = 8
UPLOAD_SECONDS = 3600.0  # an upload not finalised by then is dropped


@dataclass(frozen=True)
class Upload:
    """What an upload's first request said: whose, to which store, how big, and the document's settings."""

    owner: str
    store: str
    size: int
    mime_type: str
    display_name: str
    metadata: list[dict[str, Any]]
    chunking: tuple[int, int]  # tokens per chunk, overlap


class UploadSessions(Protocol):
    async def start(self, upload: Upload) -> str:
        """The new upload's token; 429 where too many are in flight."""
        ...

    async def send(self, token: str, offset: int, data: bytes, finalize: bool) -> tuple[Upload, bytes] | None:
        """Bytes of an upload at ``offset``; once finalised, the upload and all its bytes (and it is gone)."""
        ...

    def close(self) -> None: ...


def too_many() -> ApiError:
    return ApiError(429, "too many uploads in progress; finish one or try again shortly")


def no_such_upload() -> ApiError:
    return not_found("no such upload (it finished, failed or was never started)")


def wrong_offset(received: int, offset: int) -> ApiError:
    return invalid_argument(f"the upload is at offset {received}, not {offset}")


def too_long(size: int) -> ApiError:
    return invalid_argument(f"the upload sent more than the {size} bytes it announced")


@dataclass
class _Session:
    upload: Upload
    path: Path  # its bytes so far, spooled to disk rather than held in memory
    received: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one request of an upload at a time


class LocalUploads:
    """The uploads of this process: they do not outlive it."""

    def __init__(self, spool: Path) -> None:
        self._sessions: dict[str, _Session] = {}
        self._spool = spool
        shutil.rmtree(spool, ignore_errors=True)  # what a previous process left
        spool.mkdir(parents=True)

    async def start(self, upload: Upload) -> str:
        self._drop_stale()
        mine = sum(1 for s in self._sessions.values() if s.upload.owner == upload.owner)
        if len(self._sessions) >= MAX_UPLOADS or mine >= MAX_UPLOADS_PER_OWNER:
            raise too_many()
        token = secrets.token_urlsafe(24)
        session = _Session(upload, self._spool / secrets.token_hex(16))
        session.path.touch()
        self._sessions[token] = session
        return token

    async def send(self, token: str, offset: int, data: bytes, finalize: bool) -> tuple[Upload, bytes] | None:
        session = self._sessions.get(token)
        if session is None:
            raise no_such_upload()
        async with session.lock:
            if offset != session.received:
                raise wrong_offset(session.received, offset)
            if session.received + len(data) > session.upload.size:
                self._drop(token)
                raise too_long(session.upload.size)
            await asyncio.to_thread(_append, session.path, data)
            session.received += len(data)
            if not finalize:
                return None
            content = await asyncio.to_thread(session.path.read_bytes)
            self._drop(token)
        return session.upload, content

    def close(self) -> None:
        pass

    def _drop(self, token: str) -> None:
        session = self._sessions.pop(token, None)
        if session is not None:
            session.path.unlink(missing_ok=True)

    def _drop_stale(self) -> None:
        oldest = time.monotonic() - UPLOAD_SECONDS
        for token in [t for t, s in self._sessions.items() if s.started < oldest]:
            self._drop(token)


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)
