"""Thought signatures: opaque, tamper-evident tokens that carry a thought's reasoning text.

A client that keeps its own history (``store: false``) sends thought steps back with their signature; the
signature alone gives the server the reasoning back, and a forged or altered one is refused.

Layout (then standard base64): version byte 1, zlib-compressed UTF-8 text, 16-byte HMAC-SHA256 tag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import zlib
from pathlib import Path

_VERSION = b"\x01"
_TAG_BYTES = 16


class InvalidSignature(ValueError):
    pass


class ThoughtSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._key = key

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_TAG_BYTES]

    def sign(self, text: str) -> str:
        body = _VERSION + zlib.compress(text.encode(), 6)
        return base64.b64encode(body + self._tag(body)).decode("ascii")

    def open(self, signature: str) -> str:
        """The reasoning text sealed in ``signature``; raises InvalidSignature if it was not made here."""
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSignature("not base64") from exc
        body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if len(raw) <= _TAG_BYTES + 1 or body[:1] != _VERSION or not hmac.compare_digest(tag, self._tag(body)):
            raise InvalidSignature("signature does not verify")
        try:
            return zlib.decompress(body[1:]).decode()
        except (zlib.error, UnicodeDecodeError) as exc:
            raise InvalidSignature("corrupt payload") from exc


def load_or_create_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, or one generated on first start and kept (mode 0600) so signatures outlive restarts."""
    if configured:
        return configured.encode()
    path = data_dir / "signing.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
