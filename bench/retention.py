"""Retention over many interactions: the server's memory stays flat while it stores, expires and sweeps them.

    .venv/bin/python bench/retention.py [--interactions 10000] [--concurrency 8] [--store-url URL]

A server (scripted backend, SQLite by default or ``--store-url``) keeps interactions ``--retention`` seconds
and sweeps every second. Clients create ``--interactions`` stored interactions (half streamed, a quarter
background with a stream attached, a quarter plain; each with a few hundred bytes of text), and every
``--every`` creations the table shows the server's RSS, its stored rows, the event rows of runs not ended, and
the creates per second. Memory is flat when the last rows' RSS is no higher than the first ones' by more than
allocator noise; the rows stay bounded by what the retention keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import free_port, openinteractions

MODEL = "bench-scripted"


def config(workdir: Path, retention: int, store_url: str | None) -> Path:
    path = workdir / "config.toml"
    # Not exclusive: the table below counts the rows through a connection of its own.
    url = f'url = "{store_url}"\n' if store_url else "sqlite_exclusive = false\n"
    path.write_text(
        f'[store]\ndata_dir = "{workdir / "data"}"\n{url}retention_seconds = {retention}\n'
        f"sweep_interval_seconds = 1.0\nmax_interactions_per_owner = 100000000\n"
        f'[server]\nlog_level = "warning"\n'
        f"[limits]\ncreate_rate_per_second = 0\nmax_concurrent_runs = 0\n"
        f'[models.{MODEL}]\nbackend = "scripted"\ninline = true\n'
    )
    return path


def body(n: int) -> dict[str, object]:
    words = [{"text": f"word {n}.{i} " * 4} for i in range(16)]
    kind = n % 4
    return {"model": MODEL, "input": json.dumps({"script": words}), "stream": kind < 2, "background": kind == 2}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rows(data: Path, store_url: str | None) -> tuple[int, int]:
    """(stored interactions, event rows of runs not ended)."""
    if store_url:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(store_url)
        args = {"dbname": url.database, "user": url.username or "postgres", **dict(url.query)}
        if url.host:
            args["host"] = url.host
        with psycopg.connect(**args) as db:  # type: ignore[arg-type]
            counts = db.execute("SELECT (SELECT count(*) FROM interactions), (SELECT count(*) FROM events)").fetchone()
    else:
        with sqlite3.connect(f"file:{data / 'openinteractions.db'}?mode=ro", uri=True) as db:
            counts = db.execute("SELECT (SELECT count(*) FROM interactions), (SELECT count(*) FROM events)").fetchone()
    assert counts is not None
    return int(counts[0]), int(counts[1])


async def one(client: httpx.AsyncClient, n: int) -> None:
    payload = body(n)
    if payload["stream"]:
        async with client.stream("POST", "/v1beta/interactions", json=payload) as response:
            async for _ in response.aiter_bytes():
                pass
        return
    created = (await client.post("/v1beta/interactions", json=payload)).json()
    if payload["background"]:
        async with client.stream("GET", f"/v1beta/interactions/{created['id']}?stream=true") as response:
            async for _ in response.aiter_bytes():
                pass


async def drive(port: int, pid: int, args: argparse.Namespace, data: Path) -> list[tuple[int, float, int, int, float]]:
    samples = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(args.interactions):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
        done = 0
        started = time.monotonic()

        async def worker() -> None:
            nonlocal done, started
            while not queue.empty():
                n = queue.get_nowait()
                await one(client, n)
                done += 1
                if done % args.every == 0:
                    now = time.monotonic()
                    stored, events = rows(data, args.store_url)
                    samples.append((done, rss_mib(pid), stored, events, args.every / (now - started)))
                    started = now

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--retention", type=int, default=10)
    parser.add_argument("--store-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        with openinteractions(config(workdir, args.retention, args.store_url), port) as server:
            samples = asyncio.run(drive(port, server.pid, args, workdir / "data"))
    print(f"retention {args.retention} s, sweep every 1 s, concurrency {args.concurrency}\n")
    print("| interactions created | server RSS (MiB) | stored rows | event rows (runs not ended) | creates/s |")
    print("|---|---|---|---|---|")
    for done, rss, stored, events, rate in samples:
        print(f"| {done} | {rss:.1f} | {stored} | {events} | {rate:.0f} |")
    first, last = samples[0][1], samples[-1][1]
    print(f"\nRSS after {samples[-1][0]}: {last:.1f} MiB; after {samples[0][0]}: {first:.1f} MiB ({last - first:+.1f})")


if __name__ == "__main__":
    main()
