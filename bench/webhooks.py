"""What webhooks cost and how fast they arrive, on loopback.

    scripts/isolated .venv/bin/python bench/webhooks.py [--events 300] [--concurrency 8]

Starts a server (scripted model, SQLite store, default webhook settings but for allowing 127.0.0.1 over http)
with one registered webhook pointing at a receiver in this process, then creates ``--events`` interactions
from ``--concurrency`` client threads and reports:
- creates per second with the webhook and, for comparison, with none registered (the same server);
- the delay from each interaction's end (its create returning) to its signed event reaching the receiver:
  p50, p99, max;
- the cost of the run's hook when its owner has no webhook, measured in process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from live import LiveServer, free_port

MODEL = "m"


def receiver(arrivals: dict[str, float]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            arrivals.setdefault(json.loads(body)["data"]["id"], time.monotonic())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default 5 drops connections past it, which then wait 1 s for a retry

    port = free_port()
    server = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}/hook"


def creates(server: LiveServer, count: int, concurrency: int) -> tuple[float, dict[str, float]]:
    """(seconds, the monotonic time each create returned, by interaction id)."""
    ended: dict[str, float] = {}

    def one(n: int) -> None:
        with server.http() as http:
            body = {"model": MODEL, "input": json.dumps({"script": [{"text": f"hello {n}"}]})}
            answer = http.post("/v1beta/interactions", json=body)
            assert answer.json()["status"] == "completed", answer.text
            ended[answer.json()["id"]] = time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - start, ended


def hook_cost() -> float:
    """Microseconds per call of the run's hook for an owner with no webhook."""
    from openinteractions.config import WebhooksSettings
    from openinteractions.webhooks import Webhooks

    hooks = Webhooks(WebhooksSettings(), store=None)  # type: ignore[arg-type]
    number = 200_000
    seconds = timeit.timeit(lambda: hooks.interaction_ended("o", "v1_x", "completed", None, []), number=number)
    return seconds / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    arrivals: dict[str, float] = {}
    sink, url = receiver(arrivals)
    sections = {
        f"models.{MODEL}": {"backend": "scripted", "inline": True},
        "webhooks": {"allow_http": True, "allow_networks": ["127.0.0.1/32"]},
    }
    server = LiveServer(Path(tempfile.mkdtemp()), sections).start()
    try:
        creates(server, 50, args.concurrency)  # warm up
        plain, _ = creates(server, args.events, args.concurrency)
        with server.http() as http:
            http.post("/v1beta/webhooks", json={"uri": url, "subscribed_events": ["interaction.completed"]})
        hooked, ended = creates(server, args.events, args.concurrency)
        deadline = time.monotonic() + 60
        while len(arrivals.keys() & ended.keys()) < len(ended) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.stop()
        sink.shutdown()
    delays = sorted((arrivals[i] - ended[i]) * 1000 for i in ended if i in arrivals)
    print(f"creates/s: {args.events / plain:.0f} without a webhook, {args.events / hooked:.0f} with one")
    print(f"events received: {len(delays)} of {len(ended)}")
    if delays:
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        print(f"end of run -> receiver (ms): p50 {statistics.median(delays):.1f}, p99 {p99:.1f}, max {delays[-1]:.1f}")
    print(f"hook with no webhook: {hook_cost():.2f} us a run")


if __name__ == "__main__":
    main()
