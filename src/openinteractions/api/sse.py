"""Server-sent events out of an event log.

Frames come pre-serialised from the log; several ready events go out in one write. Idle periods send
``: keepalive`` comments (never data without an ``event_type``), and every stream ends with ``data: [DONE]``.
A client that goes away stops the response at once and, for the request that created a run, cancels it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.types import Receive, Scope, Send

DONE = b"event: done\ndata: [DONE]\n\n"
KEEPALIVE = b": keepalive\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStreamResponse:
    def __init__(
        self,
        frames: AsyncIterator[bytes],
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._frames = frames
        self._on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            scope.cancel()

        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        async with anyio.create_task_group() as group:
            group.start_soon(watch, group.cancel_scope)
            try:
                await self._write(send)
            except OSError:
                disconnected = True
            group.cancel_scope.cancel()
        if disconnected and self._on_disconnect is not None:
            with anyio.CancelScope(shield=True):
                await self._on_disconnect()

    async def _write(self, send: Send) -> None:
        async for chunk in self._frames:
            await send({"type": "http.response.body", "body": chunk or KEEPALIVE, "more_body": True})
        await send({"type": "http.response.body", "body": DONE, "more_body": False})
