"""Thought signatures: opaque, tamper-evident tokens that carry a thought's reasoning text.

A client that keeps its own history (``store: false``) sends thought steps back with their signature; the
signature alone gives the server the reasoning back, and a forged or altered one is refused. The text is
encrypted (AES-256-GCM, which also authenticates it), so a client sees its reasoning only through the
summaries it asked for, as with Gemini.

Layout (then standard base64): version byte 2, 12-byte nonce, AES-GCM ciphertext of the zlib-compressed text
with its 16-byte tag. The nonce is derived from the text (an HMAC, as in SIV constructions), so the same thought
always gets the same signature: nonces never repeat for different texts, and equal texts are the only thing
equal signatures reveal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import zlib
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x02"
_NONCE_BYTES = 12
_CONTEXT = b"openinteractions thought signature v2"


class InvalidSignature(ValueError):
    pass


class ThoughtSigner:
    def __init__(self, key: bytes) -> None:
        self.rekey(key)

    def rekey(self, key: bytes) -> None:
        """Sign with ``key`` from now on (the key every replica shares, read from the database at startup)."""
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._aead = AESGCM(hashlib.sha256(_CONTEXT + key).digest())
        self._nonce_key = hashlib.sha256(_CONTEXT + b" nonce" + key).digest()

    def sign(self, text: str) -> str:
        nonce = hmac.new(self._nonce_key, text.encode(), hashlib.sha256).digest()[:_NONCE_BYTES]
        sealed = self._aead.encrypt(nonce, zlib.compress(text.encode(), 6), _VERSION)
        return base64.b64encode(_VERSION + nonce + sealed).decode("ascii")

    def open(self, signature: str) -> str:
        """The reasoning text sealed in ``signature``; raises InvalidSignature if it was not made here."""
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSignature("not base64") from exc
        if len(raw) < 1 + _NONCE_BYTES + 16 or raw[:1] != _VERSION:
            raise InvalidSignature("not a signature of this server")
        try:
            packed = self._aead.decrypt(raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :], _VERSION)
            return zlib.decompress(packed).decode()
        except (InvalidTag, zlib.error, UnicodeDecodeError) as exc:
            raise InvalidSignature("signature does not verify") from exc


SHARED_KEY_NAME = "thought_signing_key"


def candidate_key(data_dir: Path) -> str:
    """The key to keep in the database if none is kept there yet: the one an earlier version generated into
    the data folder (so that its signatures still verify), or a new one."""
    path = data_dir / "signing.key"
    if path.exists():
        return path.read_text().strip()
    return secrets.token_hex(32)
