"""``generation_config``, ``response_format`` and ``safety_settings`` (spec §2.1, §2.4, §2.5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from .base import WireModel
from .tools import AllowedTools, ToolMode

ThinkingLevel = Literal["minimal", "low", "medium", "high", "xhigh"]


class ToolChoiceConfig(WireModel):
    allowed_tools: AllowedTools


class GenerationConfig(WireModel):
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    seed: int | None = None
    max_output_tokens: Annotated[int, Field(gt=0)] | None = None
    stop_sequences: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)] | None = None
    thinking_level: ThinkingLevel | None = None
    thinking_summaries: Literal["auto", "none"] | None = None
    tool_choice: ToolMode | ToolChoiceConfig | None = None
    speech_config: dict[str, Any] | list[dict[str, Any]] | None = None
    image_config: dict[str, Any] | None = None
    video_config: dict[str, Any] | None = None
    transcription_config: dict[str, Any] | None = None


class TextResponseFormat(WireModel):
    type: Literal["text"] = "text"
    mime_type: Literal["application/json", "text/plain"] | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class ImageResponseFormat(WireModel):
    type: Literal["image"] = "image"
    mime_type: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    delivery: Literal["inline", "uri"] | None = None


class AudioResponseFormat(WireModel):
    type: Literal["audio"] = "audio"
    mime_type: str | None = None
    sample_rate: int | None = None
    bit_rate: int | None = None
    delivery: Literal["inline", "uri"] | None = None


class VideoResponseFormat(WireModel):
    type: Literal["video"] = "video"
    aspect_ratio: str | None = None
    resolution: str | None = None
    duration: str | None = None
    delivery: Literal["inline", "uri"] | None = None
    gcs_uri: str | None = None


def _default_text_format(value: Any) -> Any:
    """JS sends a format as written; Python adds ``"type": "text"`` when it is missing. Accept both."""
    if isinstance(value, dict) and "type" not in value:
        return {"type": "text", **value}
    return value


ResponseFormat = Annotated[
    TextResponseFormat | ImageResponseFormat | AudioResponseFormat | VideoResponseFormat,
    Field(discriminator="type"),
    BeforeValidator(_default_text_format),
]

HarmCategory = Literal[
    "hate_speech",
    "dangerous_content",
    "harassment",
    "sexually_explicit",
    "civic_integrity",
    "image_hate",
    "image_dangerous_content",
    "image_harassment",
    "image_sexually_explicit",
    "jailbreak",
]
HarmThreshold = Literal["block_low_and_above", "block_medium_and_above", "block_only_high", "block_none", "off"]


class SafetySetting(WireModel):
    type: HarmCategory
    threshold: HarmThreshold
    method: Literal["severity", "probability"] | None = None


class WebhookConfig(WireModel):
    uris: list[str] | None = None
    user_metadata: dict[str, Any] | None = None
