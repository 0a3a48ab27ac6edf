"""What a server tool's result step reads like to a model, the same for every backend that renders prompts."""

from __future__ import annotations

import json

from ..filestores.tool import result_text as file_search_text
from ..schema.steps import CodeExecutionResultStep, FileSearchResultStep, GoogleSearchResultStep, UrlContextResultStep

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
