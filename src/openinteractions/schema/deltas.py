"""Step deltas: the ``delta`` of a ``step.delta`` event (spec §5.3). Every delta carries its ``type``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .base import WireModel
from .content import Annotation, Content, SummaryContent
from .steps import (
    CodeExecutionArguments,
    GoogleSearchResultItem,
    OpenRecord,
    QueryArguments,
    UrlContextArguments,
    UrlContextResultItem,
)


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


class CodeExecutionCallDelta(WireModel):
    type: Literal["code_execution_call"] = "code_execution_call"
    arguments: CodeExecutionArguments
    signature: str | None = None


class CodeExecutionResultDelta(WireModel):
    type: Literal["code_execution_result"] = "code_execution_result"
    result: list[Content] | str
    is_error: bool | None = None
    signature: str | None = None


class UrlContextCallDelta(WireModel):
    type: Literal["url_context_call"] = "url_context_call"
    arguments: UrlContextArguments
    signature: str | None = None


class UrlContextResultDelta(WireModel):
    type: Literal["url_context_result"] = "url_context_result"
    result: list[UrlContextResultItem]
    is_error: bool | None = None
    signature: str | None = None


class GoogleSearchCallDelta(WireModel):
    type: Literal["google_search_call"] = "google_search_call"
    arguments: QueryArguments
    signature: str | None = None


class GoogleSearchResultDelta(WireModel):
    type: Literal["google_search_result"] = "google_search_result"
    result: list[GoogleSearchResultItem]
    is_error: bool | None = None
    signature: str | None = None


class GoogleMapsCallDelta(WireModel):
    type: Literal["google_maps_call"] = "google_maps_call"
    arguments: QueryArguments | None = None
    signature: str | None = None


class GoogleMapsResultDelta(WireModel):
    type: Literal["google_maps_result"] = "google_maps_result"
    result: list[OpenRecord] | None = None
    signature: str | None = None


class FileSearchCallDelta(WireModel):
    type: Literal["file_search_call"] = "file_search_call"
    signature: str | None = None


class FileSearchResultDelta(WireModel):
    type: Literal["file_search_result"] = "file_search_result"
    result: list[OpenRecord]
    signature: str | None = None


class McpServerToolCallDelta(WireModel):
    type: Literal["mcp_server_tool_call"] = "mcp_server_tool_call"
    name: str
    server_name: str
    arguments: dict[str, Any]


class McpServerToolResultDelta(WireModel):
    type: Literal["mcp_server_tool_result"] = "mcp_server_tool_result"
    result: dict[str, Any] | list[Any] | str
    name: str | None = None
    server_name: str | None = None
    is_error: bool | None = None  # not in the API's schema: a failed call, or a server that did not answer


Delta = Annotated[
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
    | CodeExecutionCallDelta
    | CodeExecutionResultDelta
    | UrlContextCallDelta
    | UrlContextResultDelta
    | GoogleSearchCallDelta
    | GoogleSearchResultDelta
    | GoogleMapsCallDelta
    | GoogleMapsResultDelta
    | FileSearchCallDelta
    | FileSearchResultDelta
    | McpServerToolCallDelta
    | McpServerToolResultDelta,
    Field(discriminator="type"),
]
