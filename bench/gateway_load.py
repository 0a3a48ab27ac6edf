"""bench/loadgen.py's closed loop, also timing the first *content* event of each stream.

The first SSE event of an Interactions stream is ``interaction.created``, which a gateway can send before it has
heard from its upstream; the first content event (a chunk with ``"content":"`` from the upstream itself, a
``step.delta`` from a gateway) is the one a user waits for. Requests are built with ``loadgen.build_request``
and results kept in ``loadgen.Result``, so the numbers read the same as the other benchmarks'.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import loadgen


@dataclass
class Sample(loadgen.Sample):
    ttfc: float = 0.0  # time to the first event that carries content


async def _read_response(reader: asyncio.StreamReader, started: float, marker: bytes) -> Sample:
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"unexpected status {status!r}")
    chunked, length = await loadgen.read_headers(reader)
    ttfe = ttfc = None
    events, tail = 0, b""
    keep = max(len(marker), 2) - 1
    while True:
        if chunked:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            data = (await reader.readexactly(size + 2))[:-2]
        else:
            data = await reader.readexactly(length or 0)
        window = tail + data
        found = window.count(b"\n\n")
        if found and ttfe is None:
            ttfe = time.perf_counter() - started
        if ttfc is None and marker in window:
            ttfc = time.perf_counter() - started
        events += found
        tail = window[-keep:]
        if not chunked:
            break
    now = time.perf_counter()
    ttfe = ttfe if ttfe is not None else now - started
    return Sample(ttfe, now - started, events, ttfc if ttfc is not None else now - started)


async def _worker(host: str, port: int, request: bytes, marker: bytes, deadline: float, result: loadgen.Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            try:
                result.samples.append(await _read_response(reader, started, marker))
            except (RuntimeError, asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def run(host: str, port: int, request: bytes, marker: bytes, concurrency: int, seconds: float) -> loadgen.Result:
    result = loadgen.Result()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_worker(host, port, request, marker, deadline, result) for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result
