"""The create request body (spec §2) and the normalisation of its ``input`` into steps (spec §2.2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from .base import WireModel
from .content import Content, TextContent
from .generation import GenerationConfig, ResponseFormat, SafetySetting, WebhookConfig
from .interaction import ServiceTier
from .steps import STEP_TYPES, ModelOutputStep, Step, UserInputStep
from .tools import Tool

ResponseModality = Literal["text", "image", "audio", "video", "document"]


class CreateInteractionRequest(WireModel):
    """Both SDK variants (model and agent) in one body; which one it is gets checked after parsing."""

    model: str | None = None
    agent: str | None = None
    agent_config: dict[str, Any] | None = None
    input: Any = None
    system_instruction: str | None = None
    # Lists are bounded so that a body of a million wrong items fails at the first item past the bound:
    # pydantic would otherwise collect an error per item, seconds of event-loop time to report.
    tools: Annotated[list[Tool], Field(max_length=512)] | None = None
    generation_config: GenerationConfig | None = None
    response_format: ResponseFormat | Annotated[list[ResponseFormat], Field(max_length=8)] | None = None
    response_mime_type: str | None = None
    response_modalities: Annotated[list[ResponseModality], Field(max_length=8)] | None = None
    safety_settings: Annotated[list[SafetySetting], Field(max_length=32)] | None = None
    previous_interaction_id: str | None = None
    stream: bool | None = None
    background: bool | None = None
    store: bool | None = None
    cached_content: str | None = None
    continuation_token: str | None = None
    service_tier: ServiceTier | None = None
    labels: Annotated[dict[str, str], Field(max_length=64)] | None = None
    webhook_config: WebhookConfig | None = None
    environment: str | dict[str, Any] | None = None


class Turn(WireModel):
    """The older ``{"role", "content"}`` turn shape, accepted as input and mapped onto steps."""

    role: Literal["user", "model"]
    content: str | list[Content]


_steps = TypeAdapter(list[Step])
_contents = TypeAdapter(list[Content])
_turns = TypeAdapter(list[Turn])


class InputShapeError(ValueError):
    """The input mixes shapes in a way no SDK sends."""


def _kind(item: Any) -> str:
    if not isinstance(item, dict):
        return "other"
    if "role" in item:
        return "turn"
    if isinstance(item.get("type"), str) and item["type"] in STEP_TYPES:
        return "step"
    return "content"


_JSON_TYPES = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}
CONTENT_TYPES = frozenset({"text", "image", "audio", "document", "video"})


def _check_types(items: list[Any]) -> None:
    for i, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind is not None and not isinstance(kind, str):
            raise InputShapeError(f"input[{i}].type must be a string, got {_JSON_TYPES.get(type(kind), 'null')}")
        if kind is not None and "role" in item:
            raise InputShapeError(
                f"input[{i}] has both 'role' (a turn) and 'type' ({kind!r}): a step has no 'role', a turn no 'type'"
            )
        if kind is not None and kind not in STEP_TYPES and kind not in CONTENT_TYPES:
            raise InputShapeError(
                f"input[{i}].type: unknown type {kind!r}; expected a step type "
                f"({', '.join(sorted(STEP_TYPES))}) or a content type ({', '.join(sorted(CONTENT_TYPES))})"
            )


def _turn_to_step(turn: Turn) -> Step:
    content: list[Content] = [TextContent(text=turn.content)] if isinstance(turn.content, str) else turn.content
    if turn.role == "user":
        return UserInputStep(content=content)
    return ModelOutputStep(content=content)


def normalize_input(raw: Any) -> list[Step]:
    """Turn any accepted ``input`` shape into a list of steps.

    Accepted: a string, one content object, one step, a list of content objects (one user turn), a list of
    steps, or a list of ``{"role", "content"}`` turns. Validation errors carry locations under ``input``.
    """
    if raw is None:
        return []
    if isinstance(raw, str):
        return [UserInputStep(content=[TextContent(text=raw)])]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InputShapeError("input is an empty list")
    kinds = {_kind(item) for item in items}
    _check_types(items)
    if "other" in kinds:
        raise InputShapeError("input must be a string, an object or a list of objects")
    if len(kinds) > 1:
        raise InputShapeError("input mixes " + " and ".join(sorted(f"{k}s" for k in kinds)) + " in one list")
    kind = kinds.pop() if kinds else "content"
    if kind == "step":
        return _steps.validate_python(items, strict=True)
    if kind == "turn":
        return [_turn_to_step(t) for t in _turns.validate_python(items, strict=True)]
    return [UserInputStep(content=_contents.validate_python(items, strict=True))]
