"""What a model is offered to call: function declarations, and the tool choice that names them. Server tools
(tools/) declare themselves to the model as functions too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

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


class AllowedTools(WireModel):
    mode: ToolMode | None = None
    tools: Annotated[list[str], Field(max_length=512)] | None = None
