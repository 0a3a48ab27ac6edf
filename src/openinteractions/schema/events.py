"""Server-sent events (spec §5.2). Every event carries ``event_type`` and, once logged, ``event_id``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .base import WireModel
from .deltas import Delta
from .errors import StreamError
from .interaction import InteractionSummary, Status
from .steps import Step
from .usage import Usage


class InteractionCreatedEvent(WireModel):
    interaction: InteractionSummary
    event_type: Literal["interaction.created"] = "interaction.created"
    event_id: str | None = None


class InteractionStatusUpdateEvent(WireModel):
    interaction_id: str
    status: Status
    event_type: Literal["interaction.status_update"] = "interaction.status_update"
    event_id: str | None = None


class StepStartEvent(WireModel):
    index: int
    step: Step
    event_type: Literal["step.start"] = "step.start"
    event_id: str | None = None


class StepDeltaEvent(WireModel):
    index: int
    delta: Delta
    event_type: Literal["step.delta"] = "step.delta"
    event_id: str | None = None


class StepStopEvent(WireModel):
    index: int
    step_usage: Usage | None = None
    event_type: Literal["step.stop"] = "step.stop"
    event_id: str | None = None


class InteractionCompletedEvent(WireModel):
    interaction: InteractionSummary
    event_type: Literal["interaction.completed"] = "interaction.completed"
    event_id: str | None = None


class ErrorEvent(WireModel):
    error: StreamError
    event_type: Literal["error"] = "error"
    event_id: str | None = None


Event = Annotated[
    InteractionCreatedEvent
    | InteractionStatusUpdateEvent
    | StepStartEvent
    | StepDeltaEvent
    | StepStopEvent
    | InteractionCompletedEvent
    | ErrorEvent,
    Field(discriminator="event_type"),
]


class FutureEvent(WireModel):
    """An event type this server does not define. Only the scripted test double sends one, to show that
    clients skip what they do not know (the seed's "unknown events" section). Not part of ``Event``."""

    model_config = ConfigDict(extra="allow")

    event_type: str
    event_id: str | None = None
