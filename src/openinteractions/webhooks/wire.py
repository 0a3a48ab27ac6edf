"""What goes over the wire: request bodies (google-genai's ``WebhookInput``, ``WebhookUpdate``,
``RotateSigningSecretRequest``), the Webhook resource, the event payloads, and the checks on a URI."""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Literal
from urllib.parse import urlsplit

from ..config import WebhooksSettings
from ..engine.ending import RunEnding
from ..errors import invalid_argument
from ..ids import rfc3339_from_epoch
from ..schema.base import WireModel
from ..tools.net import AddressPolicy, Refused
from . import secrets
from .secrets import Revocation

# The events an interaction can raise here. interaction.cancelled is in Google's newer lists (@google/genai);
# batch.* and video.generated have no source in this server and are refused rather than never sent.
EVENTS = ("interaction.requires_action", "interaction.completed", "interaction.failed", "interaction.cancelled")
PING = "webhook.ping"
_STATUS_EVENTS = {
    "completed": "interaction.completed",
    "incomplete": "interaction.completed",  # ended at max_output_tokens: over, with its status in data
    "budget_exceeded": "interaction.completed",
    "requires_action": "interaction.requires_action",
    "failed": "interaction.failed",
    "cancelled": "interaction.cancelled",
}
UserState = Literal["enabled", "disabled"]
MAX_URI_CHARS = 2048


class WebhookInput(WireModel):
    uri: str
    subscribed_events: list[str]
    name: str | None = None


class WebhookUpdate(WireModel):
    uri: str | None = None
    subscribed_events: list[str] | None = None
    name: str | None = None
    state: Literal["enabled", "disabled", "disabled_due_to_failed_deliveries"] | None = None


class RotateRequest(WireModel):
    revocation_behavior: Revocation | None = None


class PingRequest(WireModel):
    pass


def event_of(status: str) -> str | None:
    return _STATUS_EVENTS.get(status)


def check_events(events: list[str], field: str) -> list[str]:
    if not events:
        raise invalid_argument(f"{field!r} must name at least one event: {', '.join(EVENTS)}")
    for event in events:
        if event not in EVENTS:
            raise invalid_argument(
                f"{field!r}: {event!r} is not an event this server sends (it has no batch jobs or video "
                f"generation); it sends {', '.join(EVENTS)}"
            )
    return list(dict.fromkeys(events))


def check_uri(uri: str, settings: WebhooksSettings, field: str) -> str:
    """A 400 for a URI no delivery could go to. An IP address is judged by the address policy here already; a
    host name is resolved and judged at each delivery, by the egress point (what it resolves to can change)."""
    if len(uri) > MAX_URI_CHARS:
        raise invalid_argument(f"{field!r} is longer than {MAX_URI_CHARS} characters")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise invalid_argument(f"{field!r} is not a URL: {exc}") from None
    schemes = ("https", "http") if settings.allow_http else ("https",)
    if parts.scheme not in schemes:
        allowed = "http or https" if settings.allow_http else "https (webhooks.allow_http is off)"
        raise invalid_argument(f"{field!r} must be an {allowed} URL, not {uri!r}")
    if not host:
        raise invalid_argument(f"{field!r} has no host: {uri!r}")
    if parts.username is not None or parts.password is not None:
        raise invalid_argument(f"{field!r}: URLs with credentials are not accepted")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return uri
    try:
        AddressPolicy(settings.allow_networks).check(host)
    except Refused as refused:
        raise invalid_argument(
            f"{field!r} is refused: {refused.reason}; webhooks reach public addresses only, unless "
            "webhooks.allow_networks lists the network"
        ) from None
    return uri


def check_config(config: Any, settings: WebhooksSettings) -> None:
    """A request's ``webhook_config`` (schema.generation.WebhookConfig)."""
    if config is None:
        return
    uris = config.uris or []
    if len(uris) > settings.max_dynamic_uris:
        raise invalid_argument(f"'webhook_config.uris' has more than {settings.max_dynamic_uris} URIs")
    for i, uri in enumerate(uris):
        check_uri(uri, settings, f"webhook_config.uris[{i}]")
    if config.user_metadata is not None:
        size = len(json.dumps(config.user_metadata, separators=(",", ":"), ensure_ascii=False).encode())
        if size > settings.max_user_metadata_bytes:
            raise invalid_argument(
                f"'webhook_config.user_metadata' takes {size} bytes as JSON, over "
                f"{settings.max_user_metadata_bytes} (webhooks.max_user_metadata_bytes)"
            )


def resource(row: dict[str, Any], now: float, new_secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "uri": row["uri"],
        "subscribed_events": json.loads(row["subscribed_events"]),
        "state": row["state"],
        "create_time": rfc3339_from_epoch(row["created_at"]),
        "update_time": rfc3339_from_epoch(row["updated_at"]),
        "signing_secrets": secrets.shown(row["secrets"], now),
    }
    if row.get("name") is not None:
        out["name"] = row["name"]
    if new_secret is not None:
        out["new_signing_secret"] = new_secret
    return out


def delivery(row: dict[str, Any]) -> dict[str, Any]:
    """One entry of GET /{version}/webhookDeliveries: an event and one destination, and how its delivery went."""
    times = {
        "create_time": row["created_at"],
        "last_attempt_time": row["last_attempt_at"],
        "deliver_time": row["delivered_at"],
        "next_attempt_time": row["next_attempt_at"] if row["state"] == "pending" else None,
    }
    out = {
        "id": row["id"],
        "webhook_message_id": row["message_id"],
        "event_type": row["event_type"],
        "interaction_id": row["interaction_id"],
        "webhook_id": row["webhook_id"],
        "uri": row["uri"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_http_status": row["last_http_status"],
        "last_error": row["last_error"],
        **{key: rfc3339_from_epoch(value) for key, value in times.items() if value is not None},
    }
    return {key: value for key, value in out.items() if value is not None}


def interaction_payload(event: str, ending: RunEnding, now: float) -> str:
    """The body of an interaction event: Standard Webhooks' ``type``, ``timestamp`` and ``data``, the data thin
    as Google's (the id to fetch, the status), with the request's ``user_metadata`` and, on failure, the
    error."""
    data: dict[str, Any] = {"id": ending.interaction_id, "status": ending.status}
    config, errors = ending.webhook_config, ending.errors
    if config and config.get("user_metadata") is not None:
        data["user_metadata"] = config["user_metadata"]
    if event == "interaction.failed" and errors:
        data["error_code"] = errors[0].get("code")
        data["error_message"] = errors[0].get("message")
    return json.dumps({"type": event, "timestamp": rfc3339_from_epoch(now), "data": data}, ensure_ascii=False)


def ping_payload(webhook_id: str, now: float) -> str:
    return json.dumps({"type": PING, "timestamp": rfc3339_from_epoch(now), "data": {"webhook_id": webhook_id}})
