"""A minimal, fast fake OpenAI-compatible upstream for bench/gateway_overhead.py (the one in
/work/shared/research/baselines.md, minus its request log):

    python bench/gateway_upstream.py PORT [CHUNKS]

``POST /v1/chat/completions`` streams, with no sleeps and one ASGI send per chunk:

- text (the default): CHUNKS content chunks of 4 characters, then a finish chunk with usage;
- tool (model name ending in ``tool``): a tool-call header, 7 argument fragments, finish ``tool_calls``;
- think (model name ending in ``think``): 8 ``reasoning_content`` chunks, 8 content chunks, finish.

``GET /v1/models`` answers for health checks.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = ["lore", "m ip", "sum ", "dolo", "r si", "t am", "et, ", "cons"]
TOOL_ARGS = ['{"loc', 'ation"', ': "Par', "is, Fr", 'ance",', ' "unit', '": "c"}']
CHUNKS = 64


def _chunk(
    cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None, usage: Any = None
) -> bytes:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def stream_events(body: dict[str, Any]) -> list[bytes]:
    model = str(body.get("model", "fake"))
    cid, created = f"chatcmpl-fake{time.time_ns()}", int(time.time())
    usage = {"prompt_tokens": 5, "completion_tokens": CHUNKS, "total_tokens": CHUNKS + 5}
    out: list[bytes] = []
    if model.endswith("tool"):
        call = {
            "index": 0,
            "id": "call_fake1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        out.append(_chunk(cid, model, created, {"role": "assistant", "content": None, "tool_calls": [call]}))
        for fragment in TOOL_ARGS:
            out.append(_chunk(cid, model, created, {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}))
        out.append(_chunk(cid, model, created, {}, "tool_calls", usage))
    elif model.endswith("think"):
        for i in range(8):
            delta = {"reasoning_content": f"thk{i} "} | ({"role": "assistant"} if i == 0 else {})
            out.append(_chunk(cid, model, created, delta))
        for i in range(8):
            out.append(_chunk(cid, model, created, {"content": WORDS[i % 8]}))
        out.append(_chunk(cid, model, created, {}, "stop", usage))
    else:
        for i in range(CHUNKS):
            delta = {"content": WORDS[i % 8]} | ({"role": "assistant"} if i == 0 else {})
            out.append(_chunk(cid, model, created, delta))
        out.append(_chunk(cid, model, created, {}, "stop", usage))
    out.append(b"data: [DONE]\n\n")
    return out


async def chat(request: Request) -> Response:
    events = stream_events(await request.json())

    async def send() -> Any:
        for event in events:
            yield event

    return StreamingResponse(send(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])

if __name__ == "__main__":
    if len(sys.argv) > 2:
        CHUNKS = int(sys.argv[2])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
