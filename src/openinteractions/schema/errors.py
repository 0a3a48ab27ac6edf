"""Error bodies: the HTTP error (google.rpc.Status shape, spec §6.1) and the in-stream ``error`` payload."""

from __future__ import annotations

from .base import WireModel


class HttpErrorDetail(WireModel):
    code: int
    message: str
    status: str


class HttpErrorBody(WireModel):
    error: HttpErrorDetail


class StreamError(WireModel):
    """In a stream the code is a lowercase slug, e.g. ``gateway_timeout`` (spec §6.2)."""

    code: str
    message: str
