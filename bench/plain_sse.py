"""The ceiling of this stack: a bare Starlette endpoint that streams the given SSE bytes, one send per event.

Run: python bench/plain_sse.py BODY_FILE PORT. Every POST gets the bytes of BODY_FILE, split at event
boundaries and sent one event per ASGI message, as a minimal SSE server would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

FRAMES = [part + b"\n\n" for part in Path(sys.argv[1]).read_bytes().split(b"\n\n") if part]


async def sse(request: Request) -> StreamingResponse:
    await request.body()

    async def frames():  # type: ignore[no-untyped-def]
        for frame in FRAMES:
            yield frame

    return StreamingResponse(frames(), media_type="text/event-stream")


app = Starlette(routes=[Route("/sse", sse, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
