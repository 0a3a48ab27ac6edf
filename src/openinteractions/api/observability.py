"""What operators look at: ``GET /metrics`` (Prometheus), ``GET /readyz``, and the middleware that counts HTTP
requests, the streams being sent and the time to a stream's first event.

``/metrics`` needs an API key where keys are configured (Prometheus sends one as a bearer token), unless
``server.open_metrics`` is set; ``/healthz`` (liveness) and ``/readyz`` (readiness: started, not shutting down,
the store answering) are open, as a load balancer calls them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from opentelemetry.trace import SpanKind, Tracer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import CONTENT_TYPE, Metrics
from .auth import Authenticator

_EVENT_STREAM = b"text/event-stream"


class HttpMetrics:
    """Counts each request by method, route (its template, not its path) and status; for an event stream, the
    time to its first bytes and the streams open. A few microseconds a request, nothing per event."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple[str, str, int], Any] = {}  # label children: labels() takes a lock each time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        status = 500
        stream = waiting = False

        def counted(message: Message) -> Awaitable[None]:
            """A plain function that hands back ``send``'s awaitable: no coroutine frame of its own per write."""
            nonlocal status, stream, waiting
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers") or ():
                    if name == b"content-type" and value.startswith(_EVENT_STREAM):
                        stream = waiting = True
                        self.metrics.active_streams.inc()
            elif waiting and message.get("body"):
                waiting = False
                self.metrics.first_event.observe(time.perf_counter() - arrived)
            return send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            if stream:
                self.metrics.active_streams.dec()
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            key = (scope["method"], route, status)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = self.metrics.requests.labels(key[0], route, str(status))
            counter.inc()


class HttpTraces:
    """A span per request (``<method> <route>``), current while the request is handled, so that the run a create
    starts is its child. Only installed where a collector is configured."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        def traced(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        with self.tracer.start_as_current_span(scope["method"], kind=SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, traced)
            finally:
                route = getattr(scope.get("route"), "path", None)
                span.update_name(f"{scope['method']} {route}" if route else scope["method"])
                span.set_attribute("http.request.method", scope["method"])
                span.set_attribute("http.response.status_code", status)
                if route:
                    span.set_attribute("http.route", route)


async def metrics(request: Request) -> Response:
    if not request.app.state.open_metrics:
        auth: Authenticator = request.app.state.auth
        auth.owner(request)  # a 401/403 in the API's shape without a valid key
    service = request.app.state.service
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


async def readyz(request: Request) -> Response:
    problem = await request.app.state.service.readiness()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


OBSERVABILITY_ROUTES = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
