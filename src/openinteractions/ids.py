"""Identifiers and timestamps."""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from functools import lru_cache

_CALL_ALPHABET = string.ascii_lowercase + string.digits


def new_interaction_id() -> str:
    return "v1_" + secrets.token_urlsafe(18)


def new_call_id() -> str:
    """Short ids like the service's (``un6k8t18``) for function and tool calls."""
    return "".join(secrets.choice(_CALL_ALPHABET) for _ in range(8))


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=256)
def _second(whole: int) -> str:
    return rfc3339(datetime.fromtimestamp(whole, UTC))


def rfc3339_from_epoch(seconds: float) -> str:
    return _second(int(seconds))
