"""A closed-loop load generator for SSE endpoints, on raw asyncio streams.

C workers each send requests back to back over their own keep-alive connection for D seconds. For every
request it records the time to the first complete SSE event (the first blank line of the body), the time to
the end of the body, and the number of events. It speaks just enough HTTP/1.1 (chunked bodies) to do that:
a general client such as httpx costs more CPU per event than the servers measured here, and on a 2-core
machine the load generator would become the bottleneck and hide the difference being measured.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Sample:
    ttfe: float
    total: float
    events: int


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0
    cpu_ms: float = float("nan")  # the server's CPU time per request, where the caller measured it

    @property
    def requests_per_s(self) -> float:
        return len(self.samples) / self.elapsed if self.elapsed else 0.0

    @property
    def events_per_s(self) -> float:
        return sum(s.events for s in self.samples) / self.elapsed if self.elapsed else 0.0

    def pct(self, attr: str, q: float) -> float:
        values = sorted(getattr(s, attr) for s in self.samples)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def p50(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples) * 1000 if self.samples else float("nan")


async def read_headers(reader: asyncio.StreamReader) -> tuple[bool, int | None]:
    """The response headers (after the status line): whether the body is chunked, and its length if given."""
    chunked, length = False, None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name.lower() == "content-length":
            length = int(value)
    return chunked, length


async def _read_response(reader: asyncio.StreamReader, started: float) -> Sample:
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"unexpected status {status!r}")
    chunked, length = await read_headers(reader)
    ttfe, events, tail = None, 0, b""
    while True:
        if chunked:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            data = await reader.readexactly(size + 2)
            data = data[:-2]
        else:
            data = await reader.readexactly(length or 0)
        found = (tail + data).count(b"\n\n")
        if found and ttfe is None:
            ttfe = time.perf_counter() - started
        events += found
        tail = (tail + data)[-1:]
        if not chunked:
            break
    now = time.perf_counter()
    return Sample(ttfe if ttfe is not None else now - started, now - started, events)


async def _worker(host: str, port: int, request: bytes, deadline: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            try:
                result.samples.append(await _read_response(reader, started))
            except (RuntimeError, asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def build_request(host: str, port: int, path: str, body: dict[str, object], headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"content-length: {len(payload)}",
        "accept: text/event-stream",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def run(host: str, port: int, request: bytes, concurrency: int, seconds: float) -> Result:
    return await run_spread([(host, port, request)], concurrency, seconds)


async def run_spread(targets: list[tuple[str, int, bytes]], concurrency: int, seconds: float) -> Result:
    """Like ``run``, with worker i on ``targets[i % len(targets)]``: connections spread round-robin over
    several servers (each target's request names its own host)."""
    result = Result()
    started = time.perf_counter()
    deadline = started + seconds
    workers = (_worker(*targets[i % len(targets)], deadline, result) for i in range(concurrency))
    await asyncio.gather(*workers)
    result.elapsed = time.perf_counter() - started
    return result
