"""Steps: the elements of ``Interaction.steps``, of ``step.start.step`` and of a step-list ``input`` (spec §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .base import WireModel
from .content import Content, SummaryContent


class OpenRecord(WireModel):
    """A result record whose declared fields are all optional and which may carry more (tool output)."""

    model_config = ConfigDict(extra="allow")


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


class CodeExecutionArguments(WireModel):
    code: str | None = None
    language: Literal["python", "bash"] | None = None


class CodeExecutionCallStep(WireModel):
    type: Literal["code_execution_call"] = "code_execution_call"
    id: str
    arguments: CodeExecutionArguments
    signature: str | None = None


class CodeExecutionResultStep(WireModel):
    type: Literal["code_execution_result"] = "code_execution_result"
    call_id: str
    result: list[Content] | str
    is_error: bool | None = None
    signature: str | None = None


class UrlContextArguments(WireModel):
    urls: list[str] | None = None


class UrlContextResultItem(OpenRecord):
    url: str | None = None
    status: Literal["success", "error", "paywall", "unsafe"] | None = None


class UrlContextCallStep(WireModel):
    type: Literal["url_context_call"] = "url_context_call"
    id: str
    arguments: UrlContextArguments
    signature: str | None = None


class UrlContextResultStep(WireModel):
    type: Literal["url_context_result"] = "url_context_result"
    call_id: str
    result: list[UrlContextResultItem]
    is_error: bool | None = None
    signature: str | None = None


class QueryArguments(WireModel):
    queries: list[str] | None = None


class GoogleSearchResultItem(OpenRecord):
    search_suggestions: str | None = None


SearchType = Literal["web_search", "image_search", "enterprise_web_search"]


class GoogleSearchCallStep(WireModel):
    type: Literal["google_search_call"] = "google_search_call"
    id: str
    arguments: QueryArguments
    search_type: SearchType | None = None
    signature: str | None = None


class GoogleSearchResultStep(WireModel):
    type: Literal["google_search_result"] = "google_search_result"
    call_id: str
    result: list[GoogleSearchResultItem]
    is_error: bool | None = None
    signature: str | None = None


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


class FileSearchCallStep(WireModel):
    type: Literal["file_search_call"] = "file_search_call"
    id: str
    signature: str | None = None


class FileSearchResultStep(WireModel):
    type: Literal["file_search_result"] = "file_search_result"
    call_id: str
    result: list[OpenRecord] | None = None
    signature: str | None = None


class McpServerToolCallStep(WireModel):
    type: Literal["mcp_server_tool_call"] = "mcp_server_tool_call"
    id: str
    name: str
    server_name: str
    arguments: dict[str, Any]


class McpServerToolResultStep(WireModel):
    type: Literal["mcp_server_tool_result"] = "mcp_server_tool_result"
    call_id: str
    name: str | None = None
    server_name: str | None = None
    result: dict[str, Any] | list[Any] | str
    is_error: bool | None = None  # not in the API's schema: a failed call, or a server that did not answer


Step = Annotated[
    UserInputStep
    | ModelOutputStep
    | ThoughtStep
    | FunctionCallStep
    | FunctionResultStep
    | CodeExecutionCallStep
    | CodeExecutionResultStep
    | UrlContextCallStep
    | UrlContextResultStep
    | GoogleSearchCallStep
    | GoogleSearchResultStep
    | GoogleMapsCallStep
    | GoogleMapsResultStep
    | FileSearchCallStep
    | FileSearchResultStep
    | McpServerToolCallStep
    | McpServerToolResultStep,
    Field(discriminator="type"),
]

STEP_TYPES = frozenset(
    cls.model_fields["type"].default
    for cls in (
        UserInputStep,
        ModelOutputStep,
        ThoughtStep,
        FunctionCallStep,
        FunctionResultStep,
        CodeExecutionCallStep,
        CodeExecutionResultStep,
        UrlContextCallStep,
        UrlContextResultStep,
        GoogleSearchCallStep,
        GoogleSearchResultStep,
        GoogleMapsCallStep,
        GoogleMapsResultStep,
        FileSearchCallStep,
        FileSearchResultStep,
        McpServerToolCallStep,
        McpServerToolResultStep,
    )
)
