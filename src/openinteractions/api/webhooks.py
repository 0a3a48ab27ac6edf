"""The webhook endpoints, with google-genai's paths, parameters and shapes (``client.webhooks.*``), and two
of this server's own: the owner's secret for ``webhook_config.uris`` and the delivery log. Every webhook
belongs to the key that created it; another key's is a 404."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import invalid_argument, not_found, validation_error
from ..schema.base import WireModel
from ..webhooks import Webhooks
from ..webhooks.wire import PingRequest, RotateRequest, WebhookInput, WebhookUpdate
from .body import query_flags, read_body
from .routes import _caller

M = TypeVar("M", bound=WireModel)
_NO_PARAMS: frozenset[str] = frozenset()
_LIST_PARAMS = frozenset({"page_size", "page_token"})
_DELIVERY_PARAMS = frozenset({"page_size", "page_token", "webhook_id", "interaction_id"})
_MAX_BODY = 64 * 1024


def _webhooks(request: Request) -> Webhooks:
    return request.app.state.webhooks  # type: ignore[no-any-return]


async def _body(request: Request, model: type[M], optional: bool = False) -> M:
    raw = await read_body(request, _MAX_BODY)
    if optional and not raw.strip():
        raw = b"{}"
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"Invalid JSON payload received. {exc}.") from None
    if not isinstance(data, dict):
        raise invalid_argument("Invalid JSON payload received. The body must be a JSON object.")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise validation_error(exc, data) from exc


def _page_size(params: dict[str, str]) -> int | None:
    value = params.get("page_size")
    if value is None:
        return None
    if not value.lstrip("-").isdigit():
        raise invalid_argument(f"'page_size' must be a whole number, got {value!r}")
    return int(value)


async def collection(request: Request) -> Response:
    _, owner = _caller(request)
    if request.method == "POST":
        query_flags(request, _NO_PARAMS)
        body = await _body(request, WebhookInput)
        return JSONResponse(await _webhooks(request).create(owner, body))
    params = query_flags(request, _LIST_PARAMS)
    return JSONResponse(await _webhooks(request).list_all(owner, _page_size(params), params.get("page_token")))


async def member(request: Request) -> Response:
    """``/webhooks/{id}`` (GET, PATCH, DELETE) and its custom methods ``{id}:ping``, ``{id}:rotateSigningSecret``
    (POST)."""
    _, owner = _caller(request)
    webhook_id, _, verb = request.path_params["name"].partition(":")
    webhooks = _webhooks(request)
    if request.method == "POST":
        query_flags(request, _NO_PARAMS)
        if verb == "ping":
            await _body(request, PingRequest, optional=True)
            await webhooks.ping(owner, webhook_id)
            return JSONResponse({})
        if verb == "rotateSigningSecret":
            return JSONResponse(await webhooks.rotate(owner, webhook_id, await _body(request, RotateRequest, True)))
        raise not_found(f"no such path: POST {request.url.path}")
    if verb:
        raise not_found(f"no such path: {request.method} {request.url.path}")
    if request.method == "PATCH":
        params = query_flags(request, frozenset({"update_mask"}))
        body = await _body(request, WebhookUpdate)
        return JSONResponse(await webhooks.update(owner, webhook_id, body, params.get("update_mask")))
    query_flags(request, _NO_PARAMS)
    if request.method == "DELETE":
        await webhooks.delete(owner, webhook_id)
        return JSONResponse({})
    return JSONResponse(await webhooks.get(owner, webhook_id))


async def owner_secret(request: Request) -> Response:
    _, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    return JSONResponse(await _webhooks(request).owner_secret(owner))


async def rotate_owner_secret(request: Request) -> Response:
    _, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    body = await _body(request, RotateRequest, optional=True)
    return JSONResponse(await _webhooks(request).rotate_owner_secret(owner, body))


async def deliveries(request: Request) -> Response:
    _, owner = _caller(request)
    params: dict[str, Any] = query_flags(request, _DELIVERY_PARAMS)
    result = await _webhooks(request).deliveries(
        owner, params.get("webhook_id"), params.get("interaction_id"), _page_size(params), params.get("page_token")
    )
    return JSONResponse(result)


WEBHOOK_ROUTES = [
    Route("/{version}/webhooks", collection, methods=["GET", "POST"]),
    Route("/{version}/webhooks/{name}", member, methods=["GET", "PATCH", "DELETE", "POST"]),
    Route("/{version}/webhookSigningSecret", owner_secret, methods=["GET"]),
    Route("/{version}/webhookSigningSecret:rotate", rotate_owner_secret, methods=["POST"]),
    Route("/{version}/webhookDeliveries", deliveries, methods=["GET"]),
]
