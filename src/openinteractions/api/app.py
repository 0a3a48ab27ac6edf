"""The Starlette application: wiring of settings, store, event log, backends and routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..backends.registry import BackendRegistry, default_models
from ..config import Settings
from ..engine.service import InteractionService
from ..engine.signatures import ThoughtSigner, candidate_key
from ..errors import ApiError
from ..events.log import MemoryEventLog
from ..schema.openapi import openapi_document
from ..store.sql import SqlStore
from ..store.sqlite import sqlite_url
from ..tools.toolbox import Toolbox
from ..webhooks import Webhooks
from .auth import Authenticator
from .file_search_stores import FILE_SEARCH_ROUTES
from .guard import HostPolicy, RequestGuard
from .observability import OBSERVABILITY_ROUTES, HttpMetrics, HttpTraces
from .playground import PLAYGROUND_ROUTES
from .routes import ROUTES
from .webhooks import WEBHOOK_ROUTES

logger = logging.getLogger(__name__)


def build_service(settings: Settings, config_dir: Path) -> InteractionService:
    data_dir = config_dir / settings.data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.store.url or sqlite_url(data_dir, settings.store.sqlite_exclusive)
    store = SqlStore(url, outage_seconds=settings.store.write_retry_seconds)
    limits = settings.limits
    # A stored interaction's events are appended to the store's events table; readers see them once committed.
    log = MemoryEventLog(limits.max_events_per_interaction, limits.max_event_log_bytes, sink=store.append_event)
    store.watch_events(log.committed, log.failed)
    registry = BackendRegistry.from_settings(settings.models or default_models(), config_dir, settings.images)
    # Without a configured key, the one kept in the database (shared by every replica) replaces this at start.
    candidate = candidate_key(data_dir)
    signer = ThoughtSigner((settings.signing_key or candidate).encode())
    webhooks = Webhooks(settings.webhooks, store)
    toolbox = Toolbox(settings.tools, data_dir)
    if toolbox.file_stores is not None:  # on PostgreSQL, the stores are kept there for every replica
        toolbox.file_stores.use_database(url)
    return InteractionService(
        settings, store, log, registry, signer, toolbox, webhooks=webhooks, key_candidate=candidate
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return Response(exc.body(), status_code=exc.http_status, headers=exc.headers, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "no such path" if exc.status_code == 404 else str(exc.detail)
    error = ApiError(exc.status_code, f"{message}: {request.method} {request.url.path}")
    response = await _api_error(request, error)
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return await _api_error(request, ApiError(500, "Internal error."))


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client left, or was cut off for sending its body too slowly, while its body was read: no one is
    left to answer."""
    return Response(status_code=499)


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def create_app(settings: Settings, config_dir: Path | None = None) -> Starlette:
    service = build_service(settings, config_dir or Path.cwd())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(
        routes=ROUTES + WEBHOOK_ROUTES + FILE_SEARCH_ROUTES + OBSERVABILITY_ROUTES + PLAYGROUND_ROUTES,
        lifespan=lifespan,
        middleware=[*_observers(service), *_middleware(settings)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            Exception: _internal_error,
        },
    )
    app.add_route("/openapi.json", _openapi, methods=["GET"])
    # Starlette would answer a path with a stray trailing slash with a 307 to the Host header's origin; the API
    # has no such paths, so they are 404s like any other.
    app.router.redirect_slashes = False
    app.state.service = service
    app.state.webhooks = service.webhooks
    app.state.auth = Authenticator(settings.auth.api_keys)
    app.state.open_metrics = settings.server.open_metrics
    return app


def _observers(service: InteractionService) -> list[Middleware]:
    """Outermost: what counts and traces every request, those the guard refuses included."""
    observers = [Middleware(HttpMetrics, metrics=service.metrics)]
    if service.telemetry.tracer is not None:
        observers.append(Middleware(HttpTraces, tracer=service.telemetry.tracer))
    return observers


def _middleware(settings: Settings) -> list[Middleware]:
    server = settings.server
    hosts = HostPolicy(server.host, server.allowed_hosts)
    guard = Middleware(RequestGuard, hosts=hosts, origins=server.allowed_origins)
    if not server.allowed_origins:
        return [guard]
    # The guard has refused every other origin already; for these, any method and header may be asked for in a
    # preflight, so that a request the API refuses gets its answer in the API's error shape, not a CORS error.
    cors = Middleware(
        CORSMiddleware,
        allow_origins=server.allowed_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        allow_private_network=True,  # a public site's page calling a server on this machine, in Chrome
        expose_headers=["retry-after", "retry-after-ms"],  # the 429s of limits.create_rate_per_second
    )
    return [guard, cors]
