"""The three server-side tools: what each tells the model it does, and how the server runs it.

A model calls a server tool like a function (under the same grammar as client functions, for models without
native tool calling). The engine sees the reserved name, emits the ``*_call`` step, runs the tool, emits the
``*_result`` step and gives the model another round with the result in its history.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..egress import Egress, OriginPolicy
from ..schema.tools import FunctionTool
from .net import Fetched, Refused, SafeFetcher, TooManyRedirects
from .sandbox import Execution, Sandbox
from .search_index import Hit, LocalIndex


@dataclass
class Outcome:
    result: Any
    is_error: bool = False
    sources: list[dict[str, str]] | None = None  # url + title of what the model was given, for citations


class ServerTool(Protocol):
    name: str  # the step type prefix and the function name the model calls

    def declaration(self) -> FunctionTool: ...

    async def run(self, arguments: dict[str, Any]) -> Outcome: ...


def _strings(maximum: int, length: int) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "maxLength": length}, "minItems": 1, "maxItems": maximum}


class SearchProvider(Protocol):
    async def search(self, query: str, limit: int, search_type: str) -> list[Hit]: ...


class LocalSearch:
    def __init__(self, index: LocalIndex) -> None:
        self.index = index

    async def search(self, query: str, limit: int, search_type: str) -> list[Hit]:
        if search_type == "image_search":
            return []  # the local index holds no images
        return await asyncio.to_thread(self.index.search, query, limit)


class SearxngSearch:
    """A self-hosted SearxNG instance, through its JSON API (``format=json`` must be enabled in its settings).
    Its host is the only place this provider connects to."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.egress = Egress("search", OriginPolicy([self.base_url]))

    async def search(self, query: str, limit: int, search_type: str) -> list[Hit]:
        params = {"q": query, "format": "json", "categories": "images" if search_type == "image_search" else "general"}
        async with self.egress.client(timeout=self.timeout) as client:
            response = await client.get(f"{self.base_url}/search", params=params)
            response.raise_for_status()
        hits = []
        for item in response.json().get("results", [])[:limit]:
            url = item.get("img_src") if search_type == "image_search" else item.get("url")
            if url:
                hits.append(Hit(url, item.get("title") or url, item.get("content") or "", item.get("score") or 0.0))
        return hits


class GoogleSearch:
    name = "google_search"

    def __init__(self, provider: SearchProvider, max_results: int) -> None:
        self.provider = provider
        self.max_results = max_results
        self.search_types = ["web_search"]

    def declaration(self) -> FunctionTool:
        return FunctionTool(
            name=self.name,
            description="Search for current or factual information. Returns titles, URLs and snippets.",
            parameters={"type": "object", "properties": {"queries": _strings(3, 120)}, "required": ["queries"]},
        )

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        try:
            for query in arguments.get("queries") or []:
                for search_type in self.search_types:
                    for hit in await self.provider.search(str(query), self.max_results, search_type):
                        if hit.url not in seen:
                            seen.add(hit.url)
                            results.append({"url": hit.url, "title": hit.title, "snippet": hit.snippet})
        except (httpx.HTTPError, OSError, ValueError, sqlite3.Error, Refused) as exc:
            return Outcome([{"error": f"search failed: {exc}"}], is_error=True)
        results = results[: self.max_results]
        return Outcome(results, sources=[{"url": r["url"], "title": r["title"]} for r in results])


class CodeExecution:
    name = "code_execution"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def declaration(self) -> FunctionTool:
        return FunctionTool(
            name=self.name,
            description="Run Python 3 code and get its printed output. Use print() to show results.",
            parameters={
                "type": "object",
                "properties": {"code": {"type": "string", "maxLength": 4000}},
                "required": ["code"],
            },
        )

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        return self.outcome(await self.sandbox.run_python(str(arguments.get("code") or "")))

    @staticmethod
    def outcome(execution: Execution) -> Outcome:
        """What the model sees of an execution: its output, and why it failed if it did."""
        text = execution.stdout
        if execution.stderr:
            text += ("\n" if text else "") + execution.stderr
        if execution.problem:
            text += ("\n" if text else "") + f"[{execution.problem}]"
        elif execution.exit_code:
            text += ("\n" if text else "") + f"[exit status {execution.exit_code}]"
        return Outcome(text, is_error=not execution.ok)


class UrlContext:
    name = "url_context"

    def __init__(self, fetcher: SafeFetcher, max_chars: int) -> None:
        self.fetcher = fetcher
        self.max_chars = max_chars

    def declaration(self) -> FunctionTool:
        return FunctionTool(
            name=self.name,
            description="Read web pages: returns the readable text of each URL.",
            parameters={"type": "object", "properties": {"urls": _strings(5, 500)}, "required": ["urls"]},
        )

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
