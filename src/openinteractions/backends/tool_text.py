"""What a server tool's result step reads like to a model, the same for every backend that renders prompts."""

from __future__ import annotations

import json
from typing import Any

from ..filestores.tool import result_text as file_search_text
from ..schema.steps import (
    CodeExecutionResultStep,
    FileSearchResultStep,
    GoogleSearchResultStep,
    McpServerToolCallStep,
    McpServerToolResultStep,
    UrlContextResultStep,
)
from ..tools.mcp import function_name

ServerResultStep = GoogleSearchResultStep | UrlContextResultStep | CodeExecutionResultStep | FileSearchResultStep


def server_result_text(step: ServerResultStep) -> str:
    if isinstance(step, FileSearchResultStep):
        return file_search_text([item.wire() for item in step.result or []])
    if isinstance(step.result, str):
        return step.result
    lines = []
    for item in step.result:
        record = item.wire()
        if isinstance(step, GoogleSearchResultStep):
            line = f"- {record.get('title', '')} ({record.get('url', '')}): {record.get('snippet', '')}"
            lines.append(line + (f" [image: {record['image_url']}]" if record.get("image_url") else ""))
        elif isinstance(step, UrlContextResultStep):
            body = record.get("text") or record.get("error") or ""
            lines.append(f"## {record.get('title') or record.get('url', '')} [{record.get('status', '')}]\n{body}")
        else:
            lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) or "(nothing)"


def mcp_call_function(step: McpServerToolCallStep) -> str:
    """The function an MCP tool's call was made as (a failed tools/list as a call of its own)."""
    return function_name(step.server_name, step.name)


def mcp_result_text(step: McpServerToolResultStep) -> str:
    """An MCP tool's result: its text items; other items named (the prompt carries text)."""
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
