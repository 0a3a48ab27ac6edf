"""OpenTelemetry traces reach a configured collector (a fake OTLP/HTTP one on loopback that decodes what it gets
with the OpenTelemetry protobufs): a span per request and a span per run, the run's a child of the request that
created it, with its interaction id, model, status and usage. Without a collector no span is made."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google import genai
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from live import LiveServer, free_port
from resuming import wait_for

KEY = "traced-key-00001"


class Collector:
    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[Any] = []
        self.headers: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans if s.name == name]


def attributes(span: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in span.attributes:
        value = item.value
        found[item.key] = value.string_value if value.HasField("string_value") else value.int_value
    return found


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("traced"), {
        "auth": {"api_keys": [KEY]},
        "models.m": {"backend": "scripted", "inline": True},
        "tools.code_execution": {"enabled": False},
        "telemetry": {"otlp_endpoint": f"http://127.0.0.1:{collector.port}", "export_delay_seconds": 0.1,
                      "headers": {"x-collector-key": "c0ll3ct"}},
    })  # fmt: skip
    yield live.start()
    live.stop()


def test_a_request_and_its_run_are_traced(server: LiveServer, collector: Collector) -> None:
    client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
    created = client.interactions.create(model="m", input=json.dumps({"script": [{"text": "one two three"}]}))
    wait_for(lambda: any(attributes(s).get("openinteractions.interaction_id") == created.id
                         for s in collector.named("interaction.run")))  # fmt: skip
    wait_for(lambda: collector.named("POST /{version}/interactions"))
    run = next(s for s in collector.named("interaction.run")
               if attributes(s)["openinteractions.interaction_id"] == created.id)  # fmt: skip
    request = next(s for s in collector.named("POST /{version}/interactions") if s.span_id == run.parent_span_id)
    assert run.trace_id == request.trace_id
    assert attributes(run) | {"openinteractions.events": 0} == {
        "openinteractions.interaction_id": created.id, "gen_ai.request.model": "m", "openinteractions.status":
        "completed", "openinteractions.events": 0, "gen_ai.usage.input_tokens": created.usage.total_input_tokens,
        "gen_ai.usage.output_tokens": 3,
    }  # fmt: skip
    assert attributes(run)["openinteractions.events"] >= 5  # created, status, step start/delta/stop, completed
    assert attributes(request) == {"http.request.method": "POST", "http.response.status_code": 200,
                                   "http.route": "/{version}/interactions"}  # fmt: skip
    assert collector.headers[-1]["content-type"] == "application/x-protobuf"
    assert collector.headers[-1]["x-collector-key"] == "c0ll3ct"


def test_refused_requests_are_traced_with_their_status(server: LiveServer, collector: Collector) -> None:
    client = genai.Client(api_key="wrong-key-0000", http_options={"base_url": server.url})
    with pytest.raises(Exception):  # noqa: B017 (the SDK's own error type for a 403)
        client.interactions.get("v1_nothing")
    wait_for(lambda: any(attributes(s).get("http.response.status_code") == 403
                         for s in collector.named("GET /{version}/interactions/{id}")))  # fmt: skip


def test_without_a_collector_nothing_is_traced() -> None:
    from openinteractions.config import TelemetrySettings
    from openinteractions.telemetry import Telemetry

    off = Telemetry(TelemetrySettings())
    assert off.tracer is None and off.run_span("v1_x", "m", 0.0) is None
    off.end_run(None, "completed", None, 0)
    off.shutdown()
