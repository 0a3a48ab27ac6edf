"""The ``mcp_server`` server tool: the tools of a remote MCP server, offered to the model and run by this server
(the MCP client is tools/mcp.py). Each allowed tool is offered as a function named ``mcp__<server>__<tool>``
(``function_name``), which no client function of the request may take; a call shows as an
``mcp_server_tool_call`` step and its ``mcp_server_tool_result``. The request's ``headers`` are credentials:
every dump of the request shows their names only."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_serializer

from ..errors import invalid_argument
from ..schema.base import WireModel
from ..schema.functions import REDACTED, AllowedTools
from .kind import ServerToolKind, ToolCallStep, ToolDeclaration, ToolResultStep, Unavailable

if TYPE_CHECKING:
    from ..config import ToolsSettings
    from .mcp import McpServers

STEP = "mcp_server_tool"  # the prefix of the step types: mcp_server_tool_call, mcp_server_tool_result
FUNCTION_PREFIX = "mcp__"
LISTING = "tools/list"  # the name of the call step that shows a server whose tools could not be listed
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class McpServerTool(ToolDeclaration):
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


class McpServerToolCallStep(ToolCallStep):
    type: Literal["mcp_server_tool_call"] = "mcp_server_tool_call"
    id: str
    name: str
    server_name: str
    arguments: dict[str, Any]


class McpServerToolResultStep(ToolResultStep):
    type: Literal["mcp_server_tool_result"] = "mcp_server_tool_result"
    call_id: str
    name: str | None = None
    server_name: str | None = None
    result: dict[str, Any] | list[Any] | str
    is_error: bool | None = None  # not in the API's schema: a failed call, or a server that did not answer


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


def function_name(server: str, tool: str) -> str:
    """The function the model calls: within OpenAI's 64 characters of ``[A-Za-z0-9_-]``, a hash where it is cut."""
    name = f"{FUNCTION_PREFIX}{_UNSAFE.sub('_', server)}__{_UNSAFE.sub('_', tool)}"
    if len(name) <= 64:
        return name
    return f"{name[:55]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def server_name(tool: McpServerTool) -> str:
    """The name steps show: the request's, or the host of its URL."""
    return tool.name or (httpx.URL(tool.url or "").host or "mcp")


class McpProvision:
    """This server's MCP client: each request's ``mcp_server`` tool is a group of the tools its server lists."""

    def __init__(self, settings: ToolsSettings) -> None:
        from .mcp import McpConnector

        self.connector = McpConnector(settings.mcp_server)
        self.problem: str | None = None

    def for_request(self, tool: McpServerTool, owner: str) -> McpServers:
        from .mcp import Endpoint, McpServers

        return McpServers(self.connector, Endpoint.of(tool))

    def close(self) -> None:
        pass


class McpServerKind(ServerToolKind):
    type = "mcp_server"
    request = McpServerTool
    call_step = McpServerToolCallStep
    result_step = McpServerToolResultStep
    call_delta = McpServerToolCallDelta
    result_delta = McpServerToolResultDelta
    declared_later = True

    @property
    def step(self) -> str:
        return STEP

    def provision(self, settings: ToolsSettings, data_dir: Path) -> McpProvision | Unavailable:
        if not settings.mcp_server.enabled:
            return Unavailable("disabled by tools.mcp_server.enabled = false")
        return McpProvision(settings)

    def check(self, tool: McpServerTool, index: int, taken: set[str]) -> str:
        url = urlsplit(tool.url or "")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise invalid_argument(f"'tools[{index}].url' must be an http or https URL (the MCP server's streamable "
                                   "HTTP endpoint)")  # fmt: skip
        name = FUNCTION_PREFIX + server_name(tool)
        if name in taken:
            raise invalid_argument(f"'tools[{index}]': the MCP server name {server_name(tool)!r} is used twice: "
                                   "give each mcp_server tool its own 'name'")  # fmt: skip
        return name

    def name_clash(self, function: str) -> str | None:
        if function.startswith(FUNCTION_PREFIX):
            return (f"function {function!r}: names that start with {FUNCTION_PREFIX!r} are the functions of the "
                    "request's MCP servers")  # fmt: skip
        return None

    def call_function(self, step: McpServerToolCallStep) -> tuple[str, dict[str, Any]]:
        """The function its call was made as (a failed tools/list as a call of its own)."""
        return function_name(step.server_name, step.name), step.arguments

    def result_text(self, step: McpServerToolResultStep) -> str:
        """Its text items; other items named (the prompt carries text)."""
        if isinstance(step.result, str):
            return step.result
        items: list[Any] = step.result if isinstance(step.result, list) else [step.result]
        lines = []
        for item in items:
            if isinstance(item, dict) and item.get("type") == "text":
                lines.append(str(item.get("text", "")))
            elif isinstance(item, dict) and item.get("type") in ("image", "audio"):
                lines.append(f"[{item['type']} {item.get('mime_type') or ''}]".replace(" ]", "]"))
            else:
                lines.append(json.dumps(item, ensure_ascii=False))
        return "\n".join(lines) or "(nothing)"

    def result_heading(self, step: McpServerToolResultStep) -> str:
        return f"The MCP tool {'failed with' if step.is_error else 'returned'}:"


KIND = McpServerKind()
