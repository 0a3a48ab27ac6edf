"""One streamed generation over SSE, with a timestamp for every text token, for bench/embedded.py.

bench/loadgen.py measures whole streams (first event, end); this needs the arrival time of each text delta and
the token counts the server reports, so it reads and parses every event. It speaks the same minimal HTTP/1.1
on raw asyncio streams (and builds its request with loadgen.build_request) so that the client stays cheap on a
2-core machine. Events may be separated by ``\\n\\n`` (OpenInteractions) or ``\\r\\n\\r\\n`` (sse-starlette, which
llama_cpp.server uses).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen

HOST = "127.0.0.1"
_EVENT_END = re.compile(rb"\r?\n\r?\n")


@dataclass
class Stream:
    """One generation as the client saw it; times are ``time.perf_counter()`` values."""

    sent: float
    times: list[float] = field(default_factory=list)  # arrival of each text delta (a token, mostly)
    text: str = ""
    tokens: int = 0  # output tokens: the server's usage when it reports one, else the number of text deltas
    finish: str | None = None  # "stop" / "max_tokens" (ceiling), the interaction status, or the finish_reason
    end: float = 0.0  # end of the response body
    interaction_id: str | None = None
    foreign: float | None = None  # share of all CPU time that other processes used during this generation
    prompt_tokens: int | None = None
    cached_tokens: int | None = None

    @property
    def ttft(self) -> float | None:
        return self.times[0] - self.sent if self.times else None

    @property
    def decode_tps(self) -> float | None:
        """Output tokens after the first / the time from the first to the last token."""
        if self.tokens < 2 or len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return None
        return (self.tokens - 1) / (self.times[-1] - self.times[0])


class ServerError(RuntimeError):
    pass


def _interactions(stream: Stream, data: str, now: float) -> None:
    if data == "[DONE]":
        return
    event = json.loads(data)
    kind = event.get("event_type")
    if kind == "step.delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "text" and delta.get("text"):
            stream.times.append(now)
            stream.text += delta["text"]
    elif kind == "interaction.created":
        stream.interaction_id = event["interaction"]["id"]
    elif kind == "interaction.completed":
        interaction = event["interaction"]
        usage = interaction.get("usage") or {}
        stream.finish = interaction.get("status")
        stream.tokens = int(usage.get("total_output_tokens", len(stream.times)))
        stream.prompt_tokens = usage.get("total_input_tokens")
        stream.cached_tokens = usage.get("total_cached_tokens")
    elif kind == "error":
        raise ServerError(f"error event: {data}")


def _chat_completions(stream: Stream, data: str, now: float) -> None:
    if data == "[DONE]":
        return
    chunk = json.loads(data)
    if "error" in chunk:
        raise ServerError(f"error chunk: {data}")
    for choice in chunk.get("choices") or []:
        content = (choice.get("delta") or {}).get("content")
        if content:
            stream.times.append(now)
            stream.text += content
            stream.tokens += 1  # llama_cpp.server sends one chunk per token
        if choice.get("finish_reason"):
            stream.finish = choice["finish_reason"]


PARSERS = {"interactions": _interactions, "chat": _chat_completions}


async def stream(port: int, path: str, body: dict[str, Any], protocol: str) -> Stream:
    """POST ``body`` to ``path`` on a fresh loopback connection and read the SSE response to its end."""
    parse = PARSERS[protocol]
    request = loadgen.build_request(HOST, port, path, body, {"connection": "close"})
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        result = Stream(sent=time.perf_counter())
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        chunked, length = await loadgen.read_headers(reader)
        if b" 200 " not in status:
            body_bytes = await reader.read(length) if length else await reader.read(65536)
            raise ServerError(f"{status.decode(errors='replace').strip()}: {body_bytes[:500]!r}")
        buffer = b""
        while True:
            if chunked:
                line = await reader.readline()
                if not line:  # the server closed the connection in the middle of the body
                    result.finish = result.finish or "connection closed"
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                try:
                    data = (await reader.readexactly(size + 2))[:-2]
                except asyncio.IncompleteReadError as exc:
                    data = exc.partial
                    result.finish = result.finish or "connection closed"
            elif length is not None:
                data = await reader.readexactly(length)
            else:
                data = await reader.read(65536)
                if not data:
                    break
            now = time.perf_counter()
            buffer += data
            *events, buffer = _EVENT_END.split(buffer)
            for raw in events:
                lines = raw.decode().splitlines()
                payload = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
                if payload:
                    parse(result, payload, now)
            if length is not None:
                break
        result.end = time.perf_counter()
        if protocol == "chat" and result.finish is None:
            result.finish = "interrupted"  # llama_cpp.server ends an interrupted stream with [DONE] alone
        return result
    finally:
        writer.close()
