"""Endpoints under any API version prefix: ``/v1``, ``/v1beta``, ``/v1alpha`` and the like (spec §1)."""

from __future__ import annotations

import asyncio
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..engine.service import InteractionService
from ..errors import ApiError, invalid_argument, not_found
from ..schema.base import WireModel
from .auth import Authenticator
from .body import parse_bool, parse_create, query_flags, read_body
from .models import model_list, model_resource
from .sse import EventStreamResponse, until_disconnected

# ASCII digits, and the whole segment: \d takes any Unicode digit and $ a trailing newline
_VERSION = re.compile(r"v[0-9]+(?:(?:alpha|beta)[0-9]*)?")
_NO_PARAMS: frozenset[str] = frozenset()
_GET_PARAMS = frozenset({"stream", "include_input", "last_event_id"})
_LIST_PARAMS = frozenset({"pageSize", "pageToken"})


def wire_response(model: WireModel) -> Response:
    return Response(model.wire_json(), media_type="application/json")


def _service(request: Request) -> InteractionService:
    return request.app.state.service  # type: ignore[no-any-return]


def _caller(request: Request) -> tuple[str, str]:
    """(api version, owner); an unknown version prefix is a 404 like any unknown path."""
    version = request.path_params["version"]
    if not _VERSION.fullmatch(version):
        raise not_found(f"no such path: {request.url.path}")
    auth: Authenticator = request.app.state.auth
    return version, auth.owner(request)


async def create_interaction(request: Request) -> Response | EventStreamResponse:
    version, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    service = _service(request)
    body = await read_body(request, service.settings.server.max_request_bytes)
    req = parse_create(body)
    request.app.state.webhooks.check_config(req.webhook_config)
    run = await service.create(req, owner, version)
    # A background run goes on without its client: it is followed and fetched by its id.
    if req.stream:
        stop = None if req.background else (lambda: service.stop_run(run))
        return EventStreamResponse(
            service.creation_stream(run),
            on_disconnect=stop,
            headers_with_first_events=True,
            check_first=lambda: service.check_started(run),
        )
    if req.background:
        await run.durable.wait()
        return wire_response(service.result(run))
    if await until_disconnected(request.receive, run.finished.wait()):
        await asyncio.shield(service.stop_run(run))
    return wire_response(service.result(run))


async def get_interaction(request: Request) -> Response | EventStreamResponse:
    _, owner = _caller(request)
    params = query_flags(request, _GET_PARAMS)
    stream = parse_bool(params, "stream")
    service = _service(request)
    interaction_id = request.path_params["id"]
    last_event_id = params.get("last_event_id")
    if stream:
        if parse_bool(params, "include_input"):
            raise invalid_argument("'include_input' applies to stream=false: a stream carries events, not input")
        return EventStreamResponse(await service.events(interaction_id, owner, last_event_id))
    if last_event_id is not None:
        raise invalid_argument("'last_event_id' can only be used with stream=true")
    return wire_response(await service.get(interaction_id, owner, parse_bool(params, "include_input")))


async def cancel_interaction(request: Request) -> Response:
    _, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    return wire_response(await _service(request).cancel(request.path_params["id"], owner))


async def delete_interaction(request: Request) -> Response:
    _, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    await _service(request).delete(request.path_params["id"], owner)
    return JSONResponse({})


async def list_models(request: Request) -> Response:
    _caller(request)
    params = query_flags(request, _LIST_PARAMS)
    return JSONResponse(model_list(_service(request).registry, params.get("pageSize"), params.get("pageToken")))


async def get_model(request: Request) -> Response:
    _caller(request)
    query_flags(request, _NO_PARAMS)
    name = request.path_params["model"]
    resource = model_resource(_service(request).registry, name)
    if resource is None:
        raise not_found(f"models/{name} is not found")
    return JSONResponse(resource)


async def live_interactions(request: Request) -> Response:
    """The Live Interactions API (``client.interactions.live``, a WebSocket) is not served: a clear error in the
    API's shape, authenticated like any call, instead of a 404 for an interaction named ``live``."""
    _caller(request)
    raise ApiError(501, "the Live Interactions API (WebSocket, interactions/live) is not served by this server; "
                   "use interactions.create with stream=True")  # fmt: skip


async def auth_tokens(request: Request) -> Response:
    _caller(request)
    raise ApiError(501, "ephemeral auth tokens (auth_tokens) belong to the Live API, which this server does not "
                   "serve; authenticate with an API key")  # fmt: skip


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def interaction_resource(request: Request) -> Response | EventStreamResponse:
    """GET and DELETE share one route, so that a 405 on this path lists both in its Allow header."""
    handler = delete_interaction if request.method == "DELETE" else get_interaction
    return await handler(request)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/{version}/interactions", create_interaction, methods=["POST"]),
    Route("/{version}/interactions/live", live_interactions, methods=["GET", "POST"]),
    Route("/{version}/auth_tokens", auth_tokens, methods=["POST"]),
    Route("/{version}/interactions/{id}/auth_tokens", auth_tokens, methods=["POST"]),
    Route("/{version}/interactions/{id}/auth_tokens/{token}", auth_tokens, methods=["DELETE"]),
    Route("/{version}/interactions/{id}", interaction_resource, methods=["GET", "DELETE"]),
    Route("/{version}/interactions/{id}/cancel", cancel_interaction, methods=["POST"]),
    Route("/{version}/models", list_models, methods=["GET"]),
    Route("/{version}/models/{model}", get_model, methods=["GET"]),
]
