"""Token usage (spec §3.1)."""

from __future__ import annotations

from typing import Literal

from .base import WireModel

Modality = Literal["text", "image", "audio", "video", "document"]


class ModalityTokens(WireModel):
    modality: Modality
    tokens: int


class GroundingToolCount(WireModel):
    type: Literal["google_search", "google_maps", "retrieval"]
    count: int


class Usage(WireModel):
    total_tokens: int | None = None
    total_input_tokens: int | None = None
    input_tokens_by_modality: list[ModalityTokens] | None = None
    total_cached_tokens: int | None = None
    cached_tokens_by_modality: list[ModalityTokens] | None = None
    total_output_tokens: int | None = None
    output_tokens_by_modality: list[ModalityTokens] | None = None
    total_tool_use_tokens: int | None = None
    tool_use_tokens_by_modality: list[ModalityTokens] | None = None
    total_thought_tokens: int | None = None
    grounding_tool_count: list[GroundingToolCount] | None = None
