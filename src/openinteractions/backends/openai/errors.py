"""Upstream failures as BackendErrors: a code slug from the HTTP status, the upstream's own message, no secret.

Upstreams describe errors in several shapes (OpenAI's ``{"error": {"message"}}``, Ollama's ``{"error": "..."}``,
FastAPI's ``{"detail": ...}``, vLLM's ``{"object": "error", "message"}``); the message is found in any of them.
Whatever the upstream says is scrubbed of the API key before it goes anywhere: some echo the key they refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..base import BackendError

_STATUS_CODES = {
    400: "invalid_argument",
    401: "permission_denied",
    403: "permission_denied",
    404: "not_found",
    408: "gateway_timeout",
    409: "aborted",
    413: "invalid_argument",
    422: "invalid_argument",
    429: "resource_exhausted",
    501: "unimplemented",
    504: "gateway_timeout",
}
_MAX_MESSAGE = 500
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=]{8,}")


def code_for_status(status: int) -> str:
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    if status >= 500:
        return "unavailable"
    if status >= 400:
        return "failed_precondition"
    return "internal"


def retryable_status(status: int) -> bool:
    """Worth trying on another upstream: overload and server failures, not a request that is wrong."""
    return status == 429 or status >= 500


class Redactor:
    """Removes the API key, and any long fragment of it, from text that came from outside."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or ""

    def __call__(self, text: str) -> str:
        if not self._secret:
            return text
        text = text.replace(self._secret, "[redacted]")
        return _TOKEN.sub(lambda m: "[redacted]" if m.group(0) in self._secret else m.group(0), text)


def upstream_message(body: bytes) -> str:
    """The error message in an upstream's error body, whatever its shape."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        return _clip(text) if text else "no details"
    found = _find_message(data)
    return _clip(found if found else text)


def _find_message(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, list) and data:
        return _find_message(data[0])
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "msg"):
            if key in data:
                found = _find_message(data[key])
                if found:
                    return found
    return None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def stream_error(payload: Any, where: str, redact: Redactor) -> BackendError:
    """An error object that an upstream sent inside the stream (vLLM, SGLang and llama.cpp server do)."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    message = _find_message(error) or "no details"
    status = error.get("code") if isinstance(error, dict) else None
    code = code_for_status(status) if isinstance(status, int) and not isinstance(status, bool) else "unavailable"
    return BackendError(redact(f"{where} failed mid-stream: {_clip(message)}"), code)


def status_error(status: int, body: bytes, where: str, redact: Redactor) -> BackendError:
    message = upstream_message(body)
    return BackendError(redact(f"{where} answered HTTP {status}: {message}"), code_for_status(status))
