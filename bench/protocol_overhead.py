"""Protocol overhead: OpenInteractions streaming N text deltas from the scripted backend, side by side in the
same run with a bare Starlette SSE endpoint that sends the same bytes (the ceiling of this stack).

    python bench/protocol_overhead.py [--deltas 64] [--seconds 8] [--rounds 3] [--concurrency 1 10 100]

Prints a Markdown table: events/s and time to first event (TTFE) per target and concurrency, the median of
the rounds, and the ratio of our events/s to the ceiling's. Targets run interleaved, round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from servers import free_port, openinteractions, process

MODEL = "bench-scripted"


def config(workdir: Path) -> Path:
    path = workdir / "config.toml"
    path.write_text(
        # The quota would stop a long store: true run (some 100,000 requests) half-way.
        f'[store]\ndata_dir = "{workdir / "data"}"\nmax_interactions_per_owner = 100000000\n'
        f'[server]\nlog_level = "warning"\n'
        # Some 100,000 requests through one key, many at once: not a rate limit test either.
        f"[limits]\ncreate_rate_per_second = 0\nmax_concurrent_runs = 0\n"
        f'[models.{MODEL}]\nbackend = "scripted"\ninline = true\n'
    )
    return path


def body(deltas: int, store: bool) -> dict[str, object]:
    script = {"script": [{"repeat": deltas, "events": [{"text": "lore"}]}]}
    return {"model": MODEL, "input": json.dumps(script), "stream": True, "store": store}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deltas", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours, plain = free_port(), free_port()
        with openinteractions(config(workdir), ours):
            sample = httpx.post(f"http://127.0.0.1:{ours}/v1beta/interactions", json=body(args.deltas, False)).content
            (workdir / "sample.sse").write_bytes(sample)
            events = sample.count(b"\n\n")
            with process(
                [sys.executable, str(Path(__file__).parent / "plain_sse.py"), str(workdir / "sample.sse"), str(plain)],
                plain,
            ):
                targets = {
                    "plain Starlette (ceiling)": (plain, "/sse", body(args.deltas, False)),
                    "OpenInteractions, store: false": (ours, "/v1beta/interactions", body(args.deltas, False)),
                    "OpenInteractions, store: true": (ours, "/v1beta/interactions", body(args.deltas, True)),
                }
                results = asyncio.run(measure(targets, args))
    report(results, args, events)


async def measure(targets: dict[str, tuple[int, str, dict[str, object]]], args: argparse.Namespace):
    results: dict[tuple[str, int], list[loadgen.Result]] = {}
    for _name, (port, path, payload) in targets.items():  # warm-up
        await loadgen.run("127.0.0.1", port, loadgen.build_request("127.0.0.1", port, path, payload, {}), 4, 1.0)
    for _ in range(args.rounds):
        for concurrency in args.concurrency:
            for name, (port, path, payload) in targets.items():
                request = loadgen.build_request("127.0.0.1", port, path, payload, {})
                result = await loadgen.run("127.0.0.1", port, request, concurrency, args.seconds)
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors} failed requests")
                results.setdefault((name, concurrency), []).append(result)
    return results


def report(results: dict[tuple[str, int], list[loadgen.Result]], args: argparse.Namespace, events: int) -> None:
    print(
        f"{args.deltas} text deltas per stream ({events} SSE events including [DONE]); "
        f"median of {args.rounds} rounds of {args.seconds:g} s\n"
    )
    print("| target | streams | events/s | x ceiling | req/s | TTFE p50 ms | TTFE p99 ms | total p50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        ceiling = statistics.median(r.events_per_s for r in results[("plain Starlette (ceiling)", concurrency)])
        for (name, c), runs in results.items():
            if c != concurrency:
                continue
            eps = statistics.median(r.events_per_s for r in runs)
            row = [
                name,
                str(c),
                f"{eps:,.0f}",
                f"{eps / ceiling:.2f}",
                f"{statistics.median(r.requests_per_s for r in runs):,.0f}",
                f"{statistics.median(r.p50('ttfe') for r in runs):.2f}",
                f"{statistics.median(r.pct('ttfe', 0.99) for r in runs):.2f}",
                f"{statistics.median(r.p50('total') for r in runs):.2f}",
            ]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
