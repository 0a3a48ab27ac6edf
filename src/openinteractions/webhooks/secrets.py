"""Signing secrets: Standard Webhooks secrets (``whsec_`` and 24 random bytes in base64, as Svix makes them),
newest first, each with the time it stops signing. After a rotation the previous secrets keep signing until
they expire (a day, or at once), so a delivery carries one signature per secret still valid and a receiver
that has not switched yet still verifies it."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime
from typing import Any, Literal

from standardwebhooks import Webhook

from ..ids import rfc3339_from_epoch

Revocation = Literal["revoke_previous_secrets_after_h24", "revoke_previous_secrets_immediately"]
GRACE_SECONDS = 24 * 3600.0  # revoke_previous_secrets_after_h24


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()  # 32 characters, no padding


def initial(now: float) -> tuple[str, str]:
    """(the secret, the stored list holding it)."""
    secret = new_secret()
    return secret, json.dumps([{"secret": secret, "created_at": now, "expires_at": None}])


def active(stored: str, now: float) -> list[dict[str, Any]]:
    return [s for s in json.loads(stored) if s["expires_at"] is None or s["expires_at"] > now]


def rotate(stored: str, now: float, revocation: Revocation | None) -> tuple[str, str]:
    """(the new secret, the stored list after the rotation). Previous secrets go at once, or within 24 hours
    (the default: Google's API names no default, and cutting receivers off is the worse surprise)."""
    secret = new_secret()
    kept = []
    if revocation != "revoke_previous_secrets_immediately":
        for old in active(stored, now):
            expires = now + GRACE_SECONDS if old["expires_at"] is None else min(old["expires_at"], now + GRACE_SECONDS)
            kept.append({**old, "expires_at": expires})
    return secret, json.dumps([{"secret": secret, "created_at": now, "expires_at": None}, *kept])


def shown(stored: str, now: float) -> list[dict[str, str]]:
    """The ``signing_secrets`` of a resource: never a whole secret."""
    out = []
    for s in active(stored, now):
        entry = {"truncated_secret": f"whsec_...{s['secret'][-4:]}"}
        if s["expires_at"] is not None:
            entry["expire_time"] = rfc3339_from_epoch(s["expires_at"])
        out.append(entry)
    return out


def signature(stored: str, now: float, message_id: str, moment: datetime, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per valid secret, newest first."""
    return " ".join(Webhook(s["secret"]).sign(message_id, moment, body) for s in active(stored, now))
