"""Server-sent events (spec §5.2). Every event carries ``event_type`` and, once logged, ``event_id``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from .base import WireModel
from .content import TextContent
from .deltas import ArgumentsDelta, Delta, TextDelta, ThoughtSummaryDelta
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


_string = json.JSONEncoder(ensure_ascii=False).encode
ChunkKind = Literal["text", "arguments_delta", "thought_summary"]
_DELTA_OPEN: dict[str, str] = {
    "text": '{"type":"text","text":',
    "arguments_delta": '{"type":"arguments_delta","arguments":',
    "thought_summary": '{"type":"thought_summary","content":{"type":"text","text":',
}
_DELTA_CLOSE = {"text": "}", "arguments_delta": "}", "thought_summary": "}}"}


@dataclass(slots=True)
class ChunkEvent:
    """A ``step.delta`` whose delta is one string: ``text``, ``arguments_delta`` or a text ``thought_summary``.

    Nearly every event of a stream is one of these, so it skips model validation and is encoded by hand;
    a test holds it to the exact bytes of the equivalent ``StepDeltaEvent``.
    """

    index: int
    kind: ChunkKind
    value: str
    event_id: str | None = None
    event_type: ClassVar[str] = "step.delta"

    def encode(self) -> bytes:
        return (
            f'{{"index":{self.index},"delta":{_DELTA_OPEN[self.kind]}{_string(self.value)}{_DELTA_CLOSE[self.kind]}'
            f',"event_type":"step.delta","event_id":"{self.event_id}"}}'
        ).encode()

    def to_model(self) -> StepDeltaEvent:
        delta: Delta
        if self.kind == "text":
            delta = TextDelta(text=self.value)
        elif self.kind == "arguments_delta":
            delta = ArgumentsDelta(arguments=self.value)
        else:
            delta = ThoughtSummaryDelta(content=TextContent(text=self.value))
        return StepDeltaEvent(index=self.index, delta=delta, event_id=self.event_id)
