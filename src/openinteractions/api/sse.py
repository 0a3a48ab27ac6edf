"""Server-sent events out of an event log.

Frames come pre-serialised from the log; several ready events go out in one write. Idle periods send
``: keepalive`` comments (never data without an ``event_type``), and every stream ends with ``data: [DONE]``,
which the readers put at the end of their last chunk (so the last events and the end go out in one write).
A client that goes away stops the response at once and, for the request that created a run, cancels it.
The frames' generator is closed when the response ends: left to the garbage collector, an unfinished async
generator is closed through a thread-safe callback, which costs every stream a wake-up of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from ..events.log import DONE, StreamCut

logger = logging.getLogger(__name__)

KEEPALIVE = b": keepalive\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def until_disconnected(receive: Receive, work: Awaitable[Any]) -> bool:
    """Run ``work`` in this task while another task watches for the client leaving; if it leaves first,
    ``work`` is cancelled. Returns whether the client left."""
    current = asyncio.current_task()
    assert current is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            pass
        left = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not left:
            raise
        current.uncancel()
    except OSError:  # a send to a closed connection (ASGI 2.4)
        left = True
    finally:
        watcher.cancel()
    return left


class EventStreamResponse:
    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
        *,
        headers_with_first_events: bool = False,
        check_first: Callable[[], None] | None = None,
    ) -> None:
        """``headers_with_first_events``: send the headers once the first events are ready rather than at once.
        For a stream whose first events come right away (a new run's): the run then starts its backend
        request before this response spends time on its first write. ``check_first`` is called then, before
        the headers: an ``ApiError`` it raises is the response instead (a run that never started is refused,
        not streamed as nothing)."""
        self._frames = frames
        self._on_disconnect = on_disconnect
        self._wait_first = headers_with_first_events
        self._check_first = check_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            left = await until_disconnected(receive, self._write(send))
        except StreamCut as exc:
            logger.warning("%s: its response is cut off", exc)
            return  # not completed: the server closes the connection without the body's end
        if left and self._on_disconnect is not None:
            await asyncio.shield(self._on_disconnect())

    async def _write(self, send: Send) -> None:
        async with contextlib.aclosing(self._frames) as frames:
            first = await anext(frames, None) if self._wait_first else None
            if self._check_first is not None:
                self._check_first()
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            if first is not None and await self._send(send, first):
                return
            async for chunk in frames:
                if await self._send(send, chunk):
                    return
        await send({"type": "http.response.body", "body": DONE, "more_body": False})  # a reader that ended early

    @staticmethod
    async def _send(send: Send, chunk: bytes) -> bool:
        """Send one chunk; True if it was the last."""
        last = chunk.endswith(DONE)
        await send({"type": "http.response.body", "body": chunk or KEEPALIVE, "more_body": not last})
        return last
