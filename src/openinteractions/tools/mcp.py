"""The MCP client behind the ``mcp_server`` tool (tools/mcp_server.py).

Each of a request's MCP servers (``McpServers``, a group of tools) is asked for its tools when the run starts
(``tools/list`` over streamable HTTP, with the official ``mcp`` SDK), once per run: a run taken over after a
crash asks again. Each
allowed tool is offered to the model as a function named ``mcp__<server>__<tool>`` (``function_name``), which no
client function of the request may take; a call runs as ``tools/call`` and shows as an ``mcp_server_tool_call``
step and its ``mcp_server_tool_result`` (with ``is_error`` when the call failed or the server did not answer).

Every connection goes through the egress point under url_context's SSRF policy with an allow-list of its own
(``tools.mcp_server.allow_networks``). Each exchange (connect, initialize, list or call) has
``tools.mcp_server.timeout_seconds``, so a dead server is an error, never a hang. The request's ``headers`` go to
the MCP server and nowhere else: they are never logged, and every dump of the request shows their names only
(``tools.mcp_server.McpServerTool``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from ..config import McpServerSettings
from ..egress import Egress
from ..schema.functions import REDACTED, FunctionTool
from .kind import BaseServerTool, Outcome, ServerTool
from .mcp_server import LISTING, STEP, McpServerTool, function_name, server_name
from .net import AddressPolicy


@dataclass(frozen=True)
class Endpoint:
    """One ``mcp_server`` tool of a request. ``allowed``: the tools it may offer (None: all), less ``denied``."""

    name: str
    url: str
    headers: dict[str, str]
    allowed: frozenset[str] | None
    denied: frozenset[str]

    @classmethod
    def of(cls, tool: McpServerTool) -> Endpoint:
        """``allowed_tools``: the tools of its entries are allowed, except those of entries with mode ``none``,
        which are refused (an entry without tools: all of them)."""
        allowed: set[str] | None = None
        denied: set[str] = set()
        for entry in tool.allowed_tools or []:
            if entry.mode == "none" and entry.tools is None:
                allowed = set()
            elif entry.mode == "none":
                denied.update(entry.tools or [])
            elif entry.tools is not None:
                allowed = (allowed or set()) | set(entry.tools)
        headers = {k: v for k, v in (tool.headers or {}).items() if v != REDACTED}  # a stored request's are gone
        frozen = None if allowed is None else frozenset(allowed)
        return cls(server_name(tool), tool.url or "", headers, frozen, frozenset(denied))

    def allows(self, tool: str) -> bool:
        return tool not in self.denied and (self.allowed is None or tool in self.allowed)


class McpConnector:
    """Exchanges with MCP servers: through the egress point, each bounded in time; results bounded in size."""

    def __init__(self, settings: McpServerSettings, egress: Egress | None = None) -> None:
        self.settings = settings
        self.egress = egress or Egress("mcp_server", AddressPolicy(settings.allow_networks))

    @asynccontextmanager
    async def session(self, endpoint: Endpoint) -> AsyncIterator[ClientSession]:
        timeout = self.settings.timeout_seconds
        async with (
            self.egress.client(headers=endpoint.headers, timeout=timeout) as client,
            streamable_http_client(endpoint.url, http_client=client) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    async def list_tools(self, endpoint: Endpoint) -> list[types.Tool]:
        async with asyncio.timeout(self.settings.timeout_seconds), self.session(endpoint) as session:
            listed = await session.list_tools()
        return listed.tools

    async def call_tool(self, endpoint: Endpoint, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        async with asyncio.timeout(self.settings.timeout_seconds), self.session(endpoint) as session:
            return await session.call_tool(tool, arguments)


def problem(exc: BaseException, endpoint: Endpoint) -> str:
    """What the model and the client are told of a failed exchange (the innermost cause; never the headers)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        what = "did not answer in time"
    elif isinstance(exc, httpx.HTTPStatusError):
        what = f"answered HTTP {exc.response.status_code}"
    else:
        what = f"failed: {str(exc) or type(exc).__name__}"
    return f"MCP server {endpoint.name!r} ({endpoint.url}) {what}"


class McpTool(BaseServerTool):
    """One tool of one MCP server, as the tool loop runs it."""

    step = STEP

    def __init__(self, connector: McpConnector, endpoint: Endpoint, tool: types.Tool) -> None:
        self.connector = connector
        self.endpoint = endpoint
        self.tool = tool
        self.name = self.function = function_name(endpoint.name, tool.name)

    def declaration(self) -> FunctionTool:
        about = f"Tool {self.tool.name!r} of the MCP server {self.endpoint.name!r}."
        description = f"{self.tool.description}\n{about}" if self.tool.description else about
        return FunctionTool(name=self.function, description=description, parameters=_schema(self.tool.inputSchema))

    def call_view(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(arguments), {"name": self.tool.name, "server_name": self.endpoint.name}

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        if not self.endpoint.allows(self.tool.name):
            return Outcome({"error": f"the tool {self.tool.name!r} is not in allowed_tools"}, is_error=True)
        try:
            called = await self.connector.call_tool(self.endpoint, self.tool.name, arguments)
        except Exception as exc:  # anything the server or the way to it did; the run goes on with the error
            return Outcome({"error": problem(exc, self.endpoint)}, is_error=True)
        return Outcome(result_items(called, self.connector.settings.max_result_chars), is_error=called.isError)


class McpServers:
    """A request's MCP server, as a group of tools: ``tools`` (function name → tool) once ``load`` has listed
    them."""

    def __init__(self, connector: McpConnector, endpoint: Endpoint) -> None:
        self.connector = connector
        self.endpoint = endpoint
        self.name = f"mcp_server:{endpoint.name}"
        self.step = STEP
        self.tools: dict[str, ServerTool] = {}

    async def load(self) -> list[tuple[dict[str, Any], Any]]:
        """List the server's allowed tools; if it fails, the listing's call step and its error."""
        try:
            listed = await self.connector.list_tools(self.endpoint)
        except Exception as exc:  # anything the server or the way to it did: the run goes on without its tools
            return [({"name": LISTING, "server_name": self.endpoint.name}, {"error": problem(exc, self.endpoint)})]
        allowed = [tool for tool in listed if self.endpoint.allows(tool.name)]
        for tool in allowed[: self.connector.settings.max_tools]:
            mcp_tool = McpTool(self.connector, self.endpoint, tool)
            self.tools[mcp_tool.function] = mcp_tool
        return []

    def logged(self, call: dict[str, Any]) -> tuple[str, ServerTool] | None:
        """A call that a run taken over after a crash found logged without its result: the tool, under its
        function name, before the server is listed again (None: another server's call)."""
        if call.get("type") != f"{STEP}_call" or call.get("server_name") != self.endpoint.name:
            return None
        tool = types.Tool(name=str(call.get("name", "")), inputSchema={"type": "object"})
        mcp_tool = McpTool(self.connector, self.endpoint, tool)
        return mcp_tool.function, mcp_tool

    def opens(self, steps: Sequence[dict[str, Any] | None]) -> bool:
        """An interaction's log opens with the failed listing of an MCP server (a run taken over after a crash)."""
        first = steps[0] if steps else None
        return first is not None and first.get("type") == f"{STEP}_call" and first.get("name") == LISTING


def result_items(called: types.CallToolResult, max_chars: int) -> list[dict[str, Any]]:
    """A result's content as the step's items (text, image, audio), ``max_chars`` in all; what does not fit is
    cut, and said to be."""
    items: list[dict[str, Any]] = []
    left = max_chars
    blocks: list[Any] = list(called.content)
    if not blocks and called.structuredContent is not None:
        blocks = [types.TextContent(type="text", text=json.dumps(called.structuredContent, ensure_ascii=False))]
    for block in blocks:
        item = _item(block)
        size = len(item.get("text") or item.get("data") or "")
        if size > left and item["type"] != "text":
            item = {"type": "text", "text": f"[{item['type']} of {size} characters left out: over the size limit]"}
        elif size > left:
            item["text"] = item["text"][:left] + f"\n[cut: the result is over {max_chars} characters]"
        left -= min(size, left)
        items.append(item)
    return items


def _item(block: Any) -> dict[str, Any]:
    if isinstance(block, types.TextContent):
        return {"type": "text", "text": block.text}
    if isinstance(block, types.ImageContent | types.AudioContent):
        return {"type": block.type, "data": block.data, "mime_type": block.mimeType}
    if isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.TextResourceContents):
        return {"type": "text", "text": block.resource.text}
    if isinstance(block, types.EmbeddedResource):
        return {"type": "text", "text": f"[resource {block.resource.uri} ({block.resource.mimeType or 'binary'})]"}
    if isinstance(block, types.ResourceLink):
        return {"type": "text", "text": f"[resource link {block.name}: {block.uri}]"}
    return {"type": "text", "text": json.dumps(block.model_dump(mode="json"), ensure_ascii=False)}


_NOT_KEYWORDS = ("properties", "$defs", "definitions", "patternProperties")


def _schema(node: Any) -> Any:
    """An MCP tool's input schema without ``title`` and ``$schema`` (FastMCP adds them; grammars need not)."""
    if isinstance(node, list):
        return [_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$schema"):
            continue
        named = key in _NOT_KEYWORDS and isinstance(value, dict)
        cleaned[key] = {name: _schema(sub) for name, sub in value.items()} if named else _schema(value)
    return cleaned
