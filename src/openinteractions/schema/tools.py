"""Tool declarations (spec §2.3). The function tool is flat, not nested under ``function_declarations``. Each
server tool's declaration is in its module (tools/registry.py lists them); the others are refused with a 400."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field

from ..tools.kind import ToolDeclaration
from ..tools.registry import SERVER_TOOLS
from .base import WireModel
from .functions import REDACTED, AllowedTools, FunctionTool, ToolMode


class GoogleMapsTool(WireModel):
    type: Literal["google_maps"] = "google_maps"
    enable_widget: bool | None = None
    latitude: float | None = None
    longitude: float | None = None


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


_OTHER_TOOLS = (FunctionTool, GoogleMapsTool, ComputerUseTool, RetrievalTool, ToolSearchTool)

if TYPE_CHECKING:  # the server tools' declarations are theirs (tools/registry.py): for the type checker, any model
    Tool = FunctionTool | GoogleMapsTool | ComputerUseTool | RetrievalTool | ToolSearchTool | ToolDeclaration
else:
    Tool = Annotated[Union[_OTHER_TOOLS + SERVER_TOOLS.requests()], Field(discriminator="type")]  # noqa: UP007

__all__ = ["REDACTED", "AllowedTools", "FunctionTool", "Tool", "ToolMode"]
