"""API keys: ``x-goog-api-key`` (what both SDKs send), ``?key=`` for curl users, or ``Authorization: Bearer``.

Every interaction belongs to the key that created it. With no keys configured the server is open and every
caller is the same owner, ``public``.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request

from ..config import ApiKey
from ..errors import ApiError

PUBLIC_OWNER = "public"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, keys: list[ApiKey | str]) -> None:
        self._owners: dict[str, str] = {}
        for entry in keys:
            key = entry if isinstance(entry, ApiKey) else ApiKey(key=entry)
            digest = _digest(key.key)
            self._owners[digest] = key.name or f"key-{digest[:12]}"

    @property
    def open(self) -> bool:
        return not self._owners

    def owner(self, request: Request) -> str:
        if self.open:
            return PUBLIC_OWNER
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            bearer = request.headers.get("authorization", "")
            key = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if not key:
            raise ApiError(401, "Method doesn't allow unregistered callers. Send an API key in x-goog-api-key.")
        # Looking up a digest keeps the comparison independent of how much of the key matched.
        owner = self._owners.get(_digest(key))
        if owner is None:
            raise ApiError(403, "API key not valid. Please pass a valid API key.")
        return owner
