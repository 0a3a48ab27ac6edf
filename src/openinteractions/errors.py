"""Errors as values: a code, an HTTP status and a message, mapped in one place to the Google error shape.

Status choices follow google.rpc. A condition that a retry cannot fix never gets 409, 429 or 5xx: both SDKs retry
408, 409, 429 and 5xx four times. A rate or concurrency limit is what a retry can fix: 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from .schema.errors import HttpErrorBody, HttpErrorDetail

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ApiError(Exception):
    def __init__(
        self, http_status: int, message: str, status: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status or _STATUS_NAMES.get(http_status, "UNKNOWN")
        self.headers = headers  # sent with the error response (a 429's Retry-After)

    def body(self) -> bytes:
        detail = HttpErrorDetail(code=self.http_status, message=self.message, status=self.status)
        return HttpErrorBody(error=detail).model_dump_json().encode()


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, message, "FAILED_PRECONDITION")


def too_many_requests(message: str, retry_after: float) -> ApiError:
    """429 RESOURCE_EXHAUSTED with the wait: ``Retry-After`` in whole seconds (RFC 9110), at least 1, and
    ``retry-after-ms``, which google-genai reads first, to the millisecond."""
    headers = {
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "retry-after-ms": str(max(1, math.ceil(retry_after * 1000))),
    }
    return ApiError(429, message, headers=headers)


def not_supported(what: str, reason: str = "not supported yet") -> ApiError:
    return ApiError(400, f"{what} is {reason}")


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def _path(loc: tuple[Any, ...], data: Any, root: str, missing: bool = False) -> str:
    """A readable location like ``input[0].content[1].text``, without pydantic's union tags. ``missing``: the
    last part names a required field that is absent."""
    out = root
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            data = data[part] if isinstance(data, list) and part < len(data) else None
        elif _union_member(
            part, loc[i + 1] if i + 1 < len(loc) else None, data, absent_field=missing and i == len(loc) - 1
        ):
            continue  # which member of a union was tried ('str', 'list[...]', 'ToolChoiceConfig'), not a field
        else:
            out += f".{part}" if out else str(part)
            data = data.get(part) if isinstance(data, dict) else None
    return out


def _union_member(part: str, following: Any, data: Any, absent_field: bool) -> bool:
    if isinstance(data, dict):
        filled_in = part in data and following in data and not isinstance(data[part], dict | list)
        if following is not None and (data.get("type") == part or filled_in):
            # the tag of a discriminated union (perhaps filled in: {"text": ...} is text content), then a field
            return True
        return part not in data and not absent_field
    if data is None:  # the request's data was not followed this far
        return "[" in part or part[:1].isupper()
    return True  # a string, number or list has no fields


def _message(err: Any) -> str:
    if err["type"] == "union_tag_not_found":  # pydantic: "Unable to extract tag using discriminator 'type'"
        return f"{err['ctx']['discriminator']} is required"
    return str(err["msg"])


def validation_error(exc: ValidationError, data: Any, root: str = "") -> ApiError:
    """One 400 that names every offending field, in Google's 'Invalid value at ...' style; the members of a
    union that all failed at one place are one message."""
    unknown: list[str] = []
    invalid: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        where = _path(tuple(err["loc"]), data, root, missing=err["type"] == "missing") or "(body)"
        if err["type"] == "extra_forbidden":
            unknown.append(f"Unknown name {where.rsplit('.', 1)[-1]!r} at {where!r}: Cannot find field.")
        elif _message(err) not in invalid.setdefault(where, []):
            invalid[where].append(_message(err))
    messages = unknown + [f"Invalid value at {where!r}: {'; or '.join(why)}" for where, why in invalid.items()]
    return invalid_argument("; ".join(messages[:10]))
