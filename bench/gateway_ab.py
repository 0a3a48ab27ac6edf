"""A/B test of two versions of the gateway: the same fake upstream, called directly and through a server run
from each source tree, in alternating rounds, so that the host's drift cancels out of the ratios.

    git worktree add /tmp/base HEAD~1
    python bench/gateway_ab.py /tmp/base/src src [--rounds 8] [--seconds 2] [--concurrency 1] [--store]

Prints, for A and B, requests/s and the ratio to the upstream round by round, then B/A round by round and
their median. On this 2-core VM one round moves by about ±5 %: a change smaller than ~2 % needs more rounds
than the default to show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_load
import loadgen
from gateway_overhead import Target, oi_config
from servers import ROOT, free_port, process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="the src/ folder of version A")
    parser.add_argument("b", type=Path, help="the src/ folder of version B")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--store", action="store_true", help="store the interactions (default: store: false)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir, up = Path(tmp), free_port()
        stack.enter_context(process([sys.executable, str(ROOT / "bench" / "gateway_upstream.py"), str(up)], up))
        direct = Target(up, "/v1/chat/completions", marker=b'"content":"', kind="chat")
        targets = {"upstream": (direct, loadgen.build_request("127.0.0.1", up, direct.path, direct.body("fake"), {}))}
        for name, src in (("A", args.a), ("B", args.b)):
            port, data = free_port(), workdir / name
            data.mkdir()
            command = [sys.executable, "-m", "openinteractions", "serve", "--config", str(oi_config(data, up))]
            env = {**os.environ, "PYTHONPATH": str(src.resolve())}
            stack.enter_context(process([*command, "--port", str(port)], port, env=env))
            target = Target(port, "/v1beta/interactions")
            body = target.body("bench", "text", args.store)
            targets[name] = (target, loadgen.build_request("127.0.0.1", port, target.path, body, target.headers))
        rates = asyncio.run(_measure(targets, args))
    _report(rates)


async def _measure(targets: dict[str, tuple[Target, bytes]], args: argparse.Namespace) -> dict[str, list[float]]:
    for target, request in targets.values():  # warm-up
        await gateway_load.run("127.0.0.1", target.port, request, target.marker, 4, 1.0)
    rates: dict[str, list[float]] = {name: [] for name in targets}
    order = list(targets)
    for number in range(args.rounds):
        for name in order if number % 2 == 0 else order[::-1]:
            target, request = targets[name]
            result = await gateway_load.run(
                "127.0.0.1", target.port, request, target.marker, args.concurrency, args.seconds
            )
            if result.errors or not result.samples:
                raise SystemExit(f"{name}: {result.errors} failed requests")
            rates[name].append(result.requests_per_s)
    return rates


def _report(rates: dict[str, list[float]]) -> None:
    print("| | req/s (median) | x upstream (median) | x upstream, round by round |")
    print("|---|---|---|---|")
    print(f"| upstream | {statistics.median(rates['upstream']):,.0f} | 1.00 | |")
    for name in ("A", "B"):
        ratios = [r / u for r, u in zip(rates[name], rates["upstream"], strict=True)]
        rounds = " ".join(f"{r:.2f}" for r in ratios)
        print(f"| {name} | {statistics.median(rates[name]):,.0f} | {statistics.median(ratios):.3f} | {rounds} |")
    gains = [b / a for a, b in zip(rates["A"], rates["B"], strict=True)]
    print(f"\nB / A round by round: {' '.join(f'{g:.3f}' for g in gains)}; median {statistics.median(gains):.3f}")


if __name__ == "__main__":
    main()
