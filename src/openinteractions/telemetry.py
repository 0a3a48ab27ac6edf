"""OpenTelemetry traces, where a collector is configured (``[telemetry] otlp_endpoint``); nothing at all without.

Spans: one per HTTP request (``HTTP <method> <route>``, from the API's middleware) and one per run
(``interaction.run``), a child of the request that created it (the run's task is started in the request's
context), ended when the run ends, with the interaction's id, model or agent, status, usage and event count.
The OpenTelemetry SDK batches them; they leave as OTLP/HTTP protobuf through the egress point, to the configured
collector only, as every other connection of the server does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, Tracer

from .config import TelemetrySettings
from .egress import Egress, OriginPolicy

logger = logging.getLogger(__name__)


class Telemetry:
    def __init__(self, settings: TelemetrySettings) -> None:
        self.tracer: Tracer | None = None
        self._provider: TracerProvider | None = None
        if not settings.otlp_endpoint:
            return
        resource = Resource.create({"service.name": settings.service_name})
        self._provider = TracerProvider(resource=resource)
        exporter = OtlpExporter(settings.otlp_endpoint, settings.headers, settings.timeout_seconds)
        delay = int(settings.export_delay_seconds * 1000)
        self._provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay))
        self.tracer = self._provider.get_tracer("openinteractions")

    def run_span(self, interaction_id: str, model: str, start_seconds: float) -> Span | None:
        if self.tracer is None:
            return None
        attributes = {"openinteractions.interaction_id": interaction_id, "gen_ai.request.model": model}
        return self.tracer.start_span("interaction.run", attributes=attributes, start_time=int(start_seconds * 1e9))

    def end_run(self, span: Span | None, status: str, usage: dict[str, Any] | None, events: int) -> None:
        if span is None:
            return
        span.set_attribute("openinteractions.status", status)
        span.set_attribute("openinteractions.events", events)
        for key, name in (("total_input_tokens", "gen_ai.usage.input_tokens"),
                          ("total_output_tokens", "gen_ai.usage.output_tokens")):  # fmt: skip
            if usage and usage.get(key) is not None:
                span.set_attribute(name, int(usage[key]))
        span.end()

    def shutdown(self) -> None:
        """Export what is batched, then stop (the server's shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()


class OtlpExporter(SpanExporter):
    """OTLP/HTTP with protobuf bodies (``<endpoint>/v1/traces``), sent through the egress point."""

    def __init__(self, endpoint: str, headers: dict[str, str], timeout: float) -> None:
        self.url = endpoint.rstrip("/") + "/v1/traces"
        self.headers = {"content-type": "application/x-protobuf", **headers}
        self.timeout = timeout
        self.egress = Egress("telemetry", OriginPolicy([endpoint]))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode_spans(spans).SerializeToString()
        try:
            asyncio.run(self._post(body))  # in the SDK's export thread, which has no loop of its own
        except Exception as exc:
            logger.warning("could not export %d spans to %s: %s", len(spans), self.url, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    async def _post(self, body: bytes) -> None:
        async with self.egress.client(timeout=self.timeout) as http:
            answer = await http.post(self.url, content=body, headers=self.headers)
            answer.raise_for_status()

    def shutdown(self) -> None:
        return None
