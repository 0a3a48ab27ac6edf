"""The server's Prometheus metrics, with the official client library, in a registry of the server's own (several
servers in one process, as in tests, do not mix their figures).

What is counted where: HTTP requests, active streams and the time to a stream's first event by the API's
middleware (api/observability.py); runs, their events and tokens when each run ends, and take-overs, by the
executor; server tool calls by the tools themselves (``CountedTool``); webhook deliveries by the deliverer; runs
queued and running are read from the executor when scraped. Nothing is counted per event on the streaming path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RATES = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_TOKEN_KEYS = ("total_input_tokens", "total_output_tokens", "total_thought_tokens")  # input, output, thought


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("openinteractions_http_requests", "HTTP requests answered, by method, route and "
                                "status", ["method", "route", "status"], registry=r)  # fmt: skip
        self.active_streams = Gauge("openinteractions_active_streams", "Event streams being sent", registry=r)
        self.first_event = Histogram("openinteractions_time_to_first_event_seconds", "From a streaming request's "
                                     "arrival to its first event on the wire", buckets=_FAST, registry=r)  # fmt: skip
        self.runs = Counter("openinteractions_runs_ended", "Runs ended on this server, by model (or agent), "
                            "backend and status", ["model", "backend", "status"], registry=r)  # fmt: skip
        self.events = Counter("openinteractions_events", "Events of the runs ended on this server, by model",
                              ["model"], registry=r)  # fmt: skip
        self.tokens = Counter("openinteractions_tokens", "Tokens of the runs ended on this server, by model, "
                              "backend and kind (input, output, thought)", ["model", "backend", "kind"],
                              registry=r)  # fmt: skip
        self.token_rate = Histogram("openinteractions_output_tokens_per_second", "Output tokens per second of "
                                    "each run, from its creation to its end", ["model", "backend"],
                                    buckets=_RATES, registry=r)  # fmt: skip
        self.run_seconds = Histogram("openinteractions_run_seconds", "Runs' time from creation to end",
                                     ["model"], registry=r)  # fmt: skip
        self.claims = Counter("openinteractions_runs_taken_over", "Runs this server took over from a server that "
                              "stopped (lease re-claims)", registry=r)  # fmt: skip
        self.tool_calls = Counter("openinteractions_tool_calls", "Server tool calls, by tool and outcome (ok, "
                                  "error)", ["tool", "outcome"], registry=r)  # fmt: skip
        self._ended: dict[tuple[str, str, str], tuple[Any, Any, Any, tuple[Any, ...], Any]] = {}
        self.deliveries = Counter("openinteractions_webhook_deliveries", "Webhook delivery attempts, by outcome "
                                  "(delivered, retrying, failed)", ["outcome"], registry=r)  # fmt: skip

    def watch_runs(self, runs: Callable[[], Iterable[Any]]) -> None:
        """Runs queued and running, read from ``runs`` (objects with ``waiting``) at each scrape."""
        self.registry.register(_RunsCollector(runs))

    def run_ended(self, model: str, backend: str, status: str, usage: dict[str, Any] | None, seconds: float,
                  events: int) -> None:  # fmt: skip
        """Called as every run ends, on the loop: the label children are looked up once per label set
        (``labels()`` validates and takes a lock each time; this ran a third of a run's bookkeeping)."""
        ended = self._ended.get((model, backend, status))
        if ended is None:
            ended = self._ended[(model, backend, status)] = self._children(model, backend, status)
        runs, events_seen, run_seconds, tokens, token_rate = ended
        runs.inc()
        events_seen.inc(events)
        run_seconds.observe(seconds)
        usage = usage or {}
        output = int(usage.get("total_output_tokens") or 0)
        for counter, key in zip(tokens, _TOKEN_KEYS, strict=True):
            if usage.get(key):
                counter.inc(int(usage[key]))
        if output and seconds > 0:
            token_rate.observe(output / seconds)

    def _children(self, model: str, backend: str, status: str) -> tuple[Any, Any, Any, tuple[Any, ...], Any]:
        tokens = tuple(self.tokens.labels(model, backend, kind) for kind in ("input", "output", "thought"))
        return (self.runs.labels(model, backend, status), self.events.labels(model), self.run_seconds.labels(model),
                tokens, self.token_rate.labels(model, backend))  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RunsCollector(Collector):
    def __init__(self, runs: Callable[[], Iterable[Any]]) -> None:
        self._runs = runs

    def collect(self) -> Iterable[Metric]:
        waiting = running = 0
        for run in self._runs():
            if run.waiting:
                waiting += 1
            else:
                running += 1
        queued = GaugeMetricFamily("openinteractions_runs_queued", "Runs waiting for a slot of their model (the "
                                   "queue's depth)", value=waiting)  # fmt: skip
        active = GaugeMetricFamily("openinteractions_runs_running", "Runs executing on this server", value=running)
        return [queued, active]
