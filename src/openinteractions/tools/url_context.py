"""The ``url_context`` server tool: the readable text of web pages, fetched under the SSRF policy
(tools/net.py). URLs in the prompt are read before the model starts, as a call of the server's own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ..schema.base import OpenRecord, WireModel
from ..schema.functions import FunctionTool
from .google_search import recalled_sources
from .kind import (
    BaseServerTool,
    Outcome,
    ServerToolKind,
    ToolCallStep,
    ToolDeclaration,
    ToolResultStep,
    Unavailable,
    string_list,
)
from .net import AddressPolicy, Fetched, Refused, SafeFetcher, TooManyRedirects

if TYPE_CHECKING:
    from ..config import ToolsSettings

_URL = re.compile(r"https?://[^\s<>\"'`]+")


class UrlContextTool(ToolDeclaration):
    type: Literal["url_context"] = "url_context"


class UrlContextArguments(WireModel):
    urls: list[str] | None = None


class UrlContextResultItem(OpenRecord):
    url: str | None = None
    status: Literal["success", "error", "paywall", "unsafe"] | None = None


class UrlContextCallStep(ToolCallStep):
    type: Literal["url_context_call"] = "url_context_call"
    id: str
    arguments: UrlContextArguments
    signature: str | None = None


class UrlContextResultStep(ToolResultStep):
    type: Literal["url_context_result"] = "url_context_result"
    call_id: str
    result: list[UrlContextResultItem]
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


def urls_in(inputs: Sequence[Any]) -> list[str]:
    """The URLs of the prompt's text (its user input steps) that are read before the model starts (up to 5)."""
    blocks = [c for s in inputs if s.type == "user_input" for c in s.content or []]
    text = " ".join(c.text for c in blocks if c.type == "text")
    return list(dict.fromkeys(u.rstrip(".,;:!?)") for u in _URL.findall(text)))[:5]


class UrlContext(BaseServerTool):
    name = step = "url_context"

    def __init__(self, fetcher: SafeFetcher, max_chars: int) -> None:
        self.fetcher = fetcher
        self.max_chars = max_chars
        self.problem: str | None = None

    def declaration(self) -> FunctionTool:
        return FunctionTool(
            name=self.name,
            description="Read web pages: returns the readable text of each URL.",
            parameters={"type": "object", "properties": {"urls": string_list(5, 500)}, "required": ["urls"]},
        )

    def prelude(self, inputs: Sequence[Any]) -> dict[str, Any] | None:
        urls = urls_in(inputs)
        return {"urls": urls} if urls else None

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        urls = [str(u) for u in arguments.get("urls") or []]
        pages = await asyncio.gather(*(self.read(url) for url in urls))
        sources = [{"url": p["url"], "title": p.get("title") or p["url"]} for p in pages if p["status"] == "success"]
        return Outcome(pages, is_error=bool(pages) and all(p["status"] != "success" for p in pages), sources=sources)

    async def read(self, url: str) -> dict[str, Any]:
        """One page: its url_context result item."""
        try:
            fetched = await self.fetcher.fetch(url)
        except Refused as exc:
            return {"url": url, "status": "unsafe", "error": exc.reason}
        except (httpx.HTTPError, OSError, TimeoutError, ValueError, TooManyRedirects) as exc:
            return {"url": url, "status": "error", "error": str(exc) or type(exc).__name__}
        if fetched.status_code in (401, 402, 403):
            return {"url": url, "status": "paywall", "error": f"HTTP {fetched.status_code}"}
        if fetched.status_code >= 400:
            return {"url": url, "status": "error", "error": f"HTTP {fetched.status_code}"}
        title, text = await asyncio.to_thread(readable, fetched)
        if not text:
            return {
                "url": url,
                "status": "error",
                "error": f"no readable text ({fetched.content_type or 'unknown type'})",
            }
        return {"url": url, "status": "success", "title": title, "text": text[: self.max_chars]}

    # A Provision of its own: one reader serves every request.
    def for_request(self, tool: UrlContextTool, owner: str) -> UrlContext:
        return self

    def close(self) -> None:
        pass


def readable(fetched: Fetched) -> tuple[str, str]:
    """Title and main text of a fetched page (trafilatura for HTML; plain text as it is)."""
    body = fetched.body.decode(errors="replace")
    kind = fetched.content_type.split(";")[0].strip().lower()
    if kind in ("text/plain", "text/markdown", "application/json"):
        return fetched.final_url, body
    if kind not in ("text/html", "application/xhtml+xml", ""):
        return "", ""
    import trafilatura

    text = trafilatura.extract(body, include_comments=False, include_tables=True) or ""
    metadata = trafilatura.extract_metadata(body)
    return (metadata.title if metadata and metadata.title else fetched.final_url), text


class UrlContextKind(ServerToolKind):
    type = "url_context"
    request = UrlContextTool
    call_step = UrlContextCallStep
    result_step = UrlContextResultStep
    call_delta = UrlContextCallDelta
    result_delta = UrlContextResultDelta

    def provision(self, settings: ToolsSettings, data_dir: Path) -> UrlContext | Unavailable:
        url = settings.url_context
        if not url.enabled:
            return Unavailable("disabled by tools.url_context.enabled = false")
        policy = AddressPolicy(url.allow_networks)
        fetcher = SafeFetcher(
            policy, max_bytes=url.max_bytes, timeout=url.timeout_seconds, max_redirects=url.max_redirects
        )
        return UrlContext(fetcher, url.max_chars)

    def result_text(self, step: UrlContextResultStep) -> str:
        lines = []
        for item in step.result:
            record = item.wire()
            body = record.get("text") or record.get("error") or ""
            lines.append(f"## {record.get('title') or record.get('url', '')} [{record.get('status', '')}]\n{body}")
        return "\n".join(lines) or "(nothing)"

    def recalled(self, result: dict[str, Any]) -> Outcome | None:
        return recalled_sources(result)


KIND = UrlContextKind()
