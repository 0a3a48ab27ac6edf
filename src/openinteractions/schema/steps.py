"""Steps: the elements of ``Interaction.steps``, of ``step.start.step`` and of a step-list ``input`` (spec §4).
Each server tool's call and result steps are declared in its module (tools/registry.py lists them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field

from ..tools.kind import ToolCallStep, ToolResultStep
from ..tools.registry import SERVER_TOOLS
from .base import OpenRecord, QueryArguments, WireModel
from .content import Content, SummaryContent


class ErrorStatus(WireModel):
    code: int | None = None
    message: str | None = None
    details: list[dict[str, Any]] | None = None


class UserInputStep(WireModel):
    type: Literal["user_input"] = "user_input"
    content: list[Content] | None = None


class ModelOutputStep(WireModel):
    type: Literal["model_output"] = "model_output"
    content: list[Content] | None = None
    error: ErrorStatus | None = None


class ThoughtStep(WireModel):
    type: Literal["thought"] = "thought"
    signature: str | None = None
    summary: list[SummaryContent] | None = None


class FunctionCallStep(WireModel):
    type: Literal["function_call"] = "function_call"
    id: str
    name: str
    arguments: dict[str, Any]


class FunctionResultStep(WireModel):
    type: Literal["function_result"] = "function_result"
    call_id: str
    name: str | None = None
    result: dict[str, Any] | list[Any] | str
    is_error: bool | None = None


class GoogleMapsCallStep(WireModel):
    type: Literal["google_maps_call"] = "google_maps_call"
    id: str
    arguments: QueryArguments | None = None
    signature: str | None = None


class GoogleMapsResultStep(WireModel):
    type: Literal["google_maps_result"] = "google_maps_result"
    call_id: str
    result: list[OpenRecord]
    signature: str | None = None


_CORE_STEPS = (
    UserInputStep,
    ModelOutputStep,
    ThoughtStep,
    FunctionCallStep,
    FunctionResultStep,
    GoogleMapsCallStep,
    GoogleMapsResultStep,
)

if TYPE_CHECKING:  # the server tools' steps are theirs (tools/registry.py); for the type checker, their bases
    Step = (
        UserInputStep
        | ModelOutputStep
        | ThoughtStep
        | FunctionCallStep
        | FunctionResultStep
        | GoogleMapsCallStep
        | GoogleMapsResultStep
        | ToolCallStep
        | ToolResultStep
    )
else:
    Step = Annotated[Union[_CORE_STEPS + SERVER_TOOLS.steps()], Field(discriminator="type")]  # noqa: UP007

STEP_TYPES = frozenset(cls.model_fields["type"].default for cls in _CORE_STEPS + SERVER_TOOLS.steps())
