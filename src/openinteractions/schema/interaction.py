"""The Interaction resource (spec §3) and the partial form that lifecycle events carry (spec §5.2)."""

from __future__ import annotations

from typing import Any, Literal

from .base import WireModel
from .generation import GenerationConfig, ResponseFormat, SafetySetting, WebhookConfig
from .steps import Step
from .tools import Tool
from .usage import Usage

Status = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "completed",
    "failed",
    "cancelled",
    "incomplete",
    "budget_exceeded",
    "requires_continuation",
    "idle",  # in google-genai 3.6.1's schema; this server's runs never report it
]
TERMINAL_STATUSES = frozenset({"requires_action", "completed", "failed", "cancelled", "incomplete", "budget_exceeded"})
ServiceTier = Literal["flex", "standard", "priority", "deferred"]


class InteractionError(WireModel):
    code: str
    message: str


class InteractionSummary(WireModel):
    """``InteractionSseEventInteraction``: what ``interaction.created`` / ``.completed`` carry."""

    id: str
    status: Status
    object: Literal["interaction"] = "interaction"
    model: str | None = None
    agent: str | None = None
    created: str | None = None
    updated: str | None = None
    service_tier: ServiceTier | None = None
    usage: Usage | None = None


class Interaction(InteractionSummary):
    """The full resource returned by create (non-stream), get and cancel."""

    previous_interaction_id: str | None = None
    steps: list[Step] | None = None
    errors: list[InteractionError] | None = None
    input: Any = None
    system_instruction: str | None = None
    tools: list[Tool] | None = None
    generation_config: GenerationConfig | None = None
    response_format: ResponseFormat | list[ResponseFormat] | None = None
    response_mime_type: str | None = None
    response_modalities: list[str] | None = None
    safety_settings: list[SafetySetting] | None = None
    labels: dict[str, str] | None = None
    webhook_config: WebhookConfig | None = None
    agent_config: dict[str, Any] | None = None
