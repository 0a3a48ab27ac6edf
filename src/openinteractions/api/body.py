"""Request bodies and query parameters, with the limits and the messages that clients get."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request

from ..errors import ApiError, invalid_argument, validation_error
from ..schema.requests import CreateInteractionRequest


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request payload size exceeds the limit: {limit} bytes (server.max_request_bytes).")


def parse_create(body: bytes) -> CreateInteractionRequest:
    try:
        request = CreateInteractionRequest.model_validate_json(body or b"null", strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise invalid_argument(f"Invalid JSON payload received. {first['msg']}.") from exc
        data = _strict_json(body or b"null")
        if not isinstance(data, dict):
            raise invalid_argument("Invalid JSON payload received. The body must be a JSON object.") from exc
        raise validation_error(exc, data) from exc
    _strict_json(body)
    return request


def _strict_json(body: bytes) -> Any:
    """pydantic's parser reads NaN, Infinity and 1e999 as floats, which are not JSON: inside a free-form
    object (a tool's ``parameters``) they would be stored and echoed as null. orjson keeps to RFC 8259."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"Invalid JSON payload received. {exc}.") from None


def query_flags(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    if not request.scope["query_string"]:  # the usual case, without parsing
        return {}
    params = dict(request.query_params)
    for name in params:
        if name not in allowed and name != "key":
            accepted = f"Allowed: {', '.join(sorted(allowed))}." if allowed else "This endpoint takes none."
            raise invalid_argument(f"Unknown query parameter {name!r}. {accepted}")
    return params


def parse_bool(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise invalid_argument(f"Query parameter {name!r} must be 'true' or 'false', got {value!r}.")
    return value == "true"
