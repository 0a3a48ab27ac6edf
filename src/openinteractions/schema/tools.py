"""Tool declarations (spec §2.3). The function tool is flat, not nested under ``function_declarations``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer

from .base import WireModel

REDACTED = "[redacted]"
ToolMode = Literal["auto", "any", "none", "validated"]


class FunctionTool(WireModel):
    type: Literal["function"] = "function"
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    short_description: str | None = None
    defer_loading: bool | None = None


class GoogleSearchTool(WireModel):
    type: Literal["google_search"] = "google_search"
    search_types: (
        Annotated[list[Literal["web_search", "image_search", "enterprise_web_search"]], Field(max_length=3)] | None
    ) = None


class CodeExecutionTool(WireModel):
    type: Literal["code_execution"] = "code_execution"


class UrlContextTool(WireModel):
    type: Literal["url_context"] = "url_context"


class FileSearchTool(WireModel):
    type: Literal["file_search"] = "file_search"
    file_search_store_names: Annotated[list[str], Field(max_length=64)] | None = None
    metadata_filter: str | None = None
    top_k: int | None = None


class GoogleMapsTool(WireModel):
    type: Literal["google_maps"] = "google_maps"
    enable_widget: bool | None = None
    latitude: float | None = None
    longitude: float | None = None


class AllowedTools(WireModel):
    mode: ToolMode | None = None
    tools: Annotated[list[str], Field(max_length=512)] | None = None


class McpServerTool(WireModel):
    type: Literal["mcp_server"] = "mcp_server"
    name: str | None = None
    url: str | None = None
    headers: Annotated[dict[str, str], Field(max_length=64)] | None = None
    allowed_tools: Annotated[list[AllowedTools], Field(max_length=64)] | None = None
    defer_loading: bool | None = None

    @field_serializer("headers")
    def _redacted(self, headers: dict[str, str] | None) -> dict[str, str] | None:
        """Headers carry credentials: every dump (the echoed resource, the stored request) shows their names only.
        The run reads them from the parsed request; tools/mcp.py sends none of the redacted ones."""
        return None if headers is None else dict.fromkeys(headers, REDACTED)


class ComputerUseTool(WireModel):
    type: Literal["computer_use"] = "computer_use"
    environment: Literal["browser", "mobile", "desktop"] | None = None
    excluded_predefined_functions: Annotated[list[str], Field(max_length=64)] | None = None
    disabled_safety_policies: Annotated[list[str], Field(max_length=64)] | None = None
    enable_prompt_injection_detection: bool | None = None


class RetrievalTool(WireModel):
    type: Literal["retrieval"] = "retrieval"
    retrieval_types: Annotated[list[str], Field(max_length=16)] | None = None
    vertex_ai_search_config: dict[str, Any] | None = None
    rag_store_config: dict[str, Any] | None = None
    exa_ai_search_config: dict[str, Any] | None = None
    parallel_ai_search_config: dict[str, Any] | None = None


class ToolSearchTool(WireModel):
    type: Literal["tool_search"] = "tool_search"
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    execution: Literal["server", "client"] | None = None


Tool = Annotated[
    FunctionTool
    | GoogleSearchTool
    | CodeExecutionTool
    | UrlContextTool
    | FileSearchTool
    | GoogleMapsTool
    | McpServerTool
    | ComputerUseTool
    | RetrievalTool
    | ToolSearchTool,
    Field(discriminator="type"),
]

SERVER_TOOL_TYPES = frozenset({"google_search", "code_execution", "url_context", "file_search"})
