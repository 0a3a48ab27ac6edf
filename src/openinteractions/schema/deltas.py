"""Step deltas: the ``delta`` of a ``step.delta`` event (spec §5.3). Every delta carries its ``type``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field

from ..tools.registry import SERVER_TOOLS
from .base import OpenRecord, QueryArguments, WireModel
from .content import Annotation, SummaryContent


class TextDelta(WireModel):
    type: Literal["text"] = "text"
    text: str


class ImageDelta(WireModel):
    type: Literal["image"] = "image"
    data: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    resolution: str | None = None


class AudioDelta(WireModel):
    type: Literal["audio"] = "audio"
    data: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    rate: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


class VideoDelta(WireModel):
    type: Literal["video"] = "video"
    data: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    resolution: str | None = None


class DocumentDelta(WireModel):
    type: Literal["document"] = "document"
    data: str | None = None
    uri: str | None = None
    mime_type: str | None = None


class TextAnnotationDelta(WireModel):
    type: Literal["text_annotation_delta"] = "text_annotation_delta"
    annotations: list[Annotation] | None = None


class ThoughtSummaryDelta(WireModel):
    type: Literal["thought_summary"] = "thought_summary"
    content: SummaryContent | None = None


class ThoughtSignatureDelta(WireModel):
    type: Literal["thought_signature"] = "thought_signature"
    signature: str | None = None


class ArgumentsDelta(WireModel):
    type: Literal["arguments_delta"] = "arguments_delta"
    arguments: str | None = None


class FunctionResultDelta(WireModel):
    type: Literal["function_result"] = "function_result"
    result: dict[str, Any] | list[Any] | str
    name: str | None = None
    is_error: bool | None = None


class GoogleMapsCallDelta(WireModel):
    type: Literal["google_maps_call"] = "google_maps_call"
    arguments: QueryArguments | None = None
    signature: str | None = None


class GoogleMapsResultDelta(WireModel):
    type: Literal["google_maps_result"] = "google_maps_result"
    result: list[OpenRecord] | None = None
    signature: str | None = None


_CORE_DELTAS = (
    TextDelta,
    ImageDelta,
    AudioDelta,
    VideoDelta,
    DocumentDelta,
    TextAnnotationDelta,
    ThoughtSummaryDelta,
    ThoughtSignatureDelta,
    ArgumentsDelta,
    FunctionResultDelta,
    GoogleMapsCallDelta,
    GoogleMapsResultDelta,
)

if TYPE_CHECKING:  # the server tools' deltas are theirs (tools/registry.py): for the type checker, any model
    Delta = (
        TextDelta
        | ImageDelta
        | AudioDelta
        | VideoDelta
        | DocumentDelta
        | TextAnnotationDelta
        | ThoughtSummaryDelta
        | ThoughtSignatureDelta
        | ArgumentsDelta
        | FunctionResultDelta
        | GoogleMapsCallDelta
        | GoogleMapsResultDelta
        | WireModel
    )
else:
    Delta = Annotated[Union[_CORE_DELTAS + SERVER_TOOLS.deltas()], Field(discriminator="type")]  # noqa: UP007
