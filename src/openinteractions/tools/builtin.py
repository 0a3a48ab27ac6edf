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
        find = self.index.search_images if search_type == "image_search" else self.index.search
        return await asyncio.to_thread(find, query, limit)


class SearxngSearch:
    """A self-hosted SearxNG instance, through its JSON API (``format=json`` must be enabled in its settings).
    Its host is the only place this provider connects to."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.egress = Egress("search", OriginPolicy([self.base_url]))

    async def search(self, query: str, limit: int, search_type: str) -> list[Hit]:
        images = search_type == "image_search"
        params = {"q": query, "format": "json", "categories": "images" if images else "general"}
        async with self.egress.client(timeout=self.timeout) as client:
            response = await client.get(f"{self.base_url}/search", params=params)
            response.raise_for_status()
        hits = []
        for item in response.json().get("results", []):
            hit = _image_hit(item) if images else _web_hit(item)
            if hit is not None:
                hits.append(hit)
        return hits[:limit]


def _web_hit(item: dict[str, Any]) -> Hit | None:
    url = item.get("url")
    return Hit(url, item.get("title") or url, item.get("content") or "", item.get("score") or 0.0) if url else None


def _image_hit(item: dict[str, Any]) -> Hit | None:
    """A SearxNG image result (its ``images.html`` template): ``img_src`` is the image, ``url`` the page showing
    it, ``thumbnail_src`` (``thumbnail`` in newer engines) a small copy."""
    image = item.get("img_src")
    if not image or item.get("template", "images.html") != "images.html":
        return None
    page = item.get("url") or image
    thumbnail = item.get("thumbnail_src") or item.get("thumbnail") or ""
    mime_type = str(item.get("img_format") or "")
    mime_type = mime_type if mime_type.startswith("image/") else ""  # some engines give "JPEG", not a type
    snippet = item.get("content") or item.get("title") or ""
    return Hit(page, item.get("title") or page, snippet, item.get("score") or 0.0, image, thumbnail, mime_type)


def result_item(hit: Hit) -> dict[str, Any]:
    """A google_search result item: url, title and snippet; an image also has ``image_url`` (its ``url`` is the
    page that shows it), and ``thumbnail_url`` and ``mime_type`` where known."""
    item: dict[str, Any] = {"url": hit.url, "title": hit.title, "snippet": hit.snippet}
    if hit.image_url:
        item["image_url"] = hit.image_url
        item.update({k: v for k, v in (("thumbnail_url", hit.thumbnail_url), ("mime_type", hit.mime_type)) if v})
    return item


class GoogleSearch:
    """One call runs one search type: the request's tool lists the types (``search_types``, web_search if none);
    with more than one, the model picks one per call with its ``search_type`` argument (web_search if it names
    none), and the call step shows it as the step's ``search_type``."""

    name = "google_search"

    def __init__(self, provider: SearchProvider, max_results: int) -> None:
        self.provider = provider
        self.max_results = max_results
        self.search_types = ["web_search"]

    def declaration(self) -> FunctionTool:
        properties: dict[str, Any] = {"queries": _strings(3, 120)}
        description = "Search for current or factual information. Returns titles, URLs and snippets."
        if "image_search" in self.search_types:
            description += " An image search returns images (image_url) with their captions and the pages they are on."
        if len(self.search_types) > 1:
            properties["search_type"] = {"type": "string", "enum": list(self.search_types)}
        return FunctionTool(
            name=self.name,
            description=description,
            parameters={"type": "object", "properties": properties, "required": ["queries"]},
        )

    def search_type(self, arguments: dict[str, Any]) -> str:
        """The search type a call runs: the one it names if the request allows it, else the default."""
        named = arguments.get("search_type")
        if named in self.search_types:
            return str(named)
        return "web_search" if "web_search" in self.search_types else self.search_types[0]

    def call_step(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """What a call's step shows: its ``arguments`` (the queries), and ``search_type`` beside them."""
        shown = {k: v for k, v in arguments.items() if k != "search_type"}
        return shown, {"search_type": self.search_type(arguments)}

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        search_type = self.search_type(arguments)
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        try:
            for query in arguments.get("queries") or []:
                for hit in await self.provider.search(str(query), self.max_results, search_type):
                    key = hit.image_url or hit.url
                    if key not in seen:
                        seen.add(key)
                        results.append(result_item(hit))
        except (httpx.HTTPError, OSError, ValueError, sqlite3.Error, Refused) as exc:
            return Outcome([{"error": f"search failed: {exc}"}], is_error=True)
        results = results[: self.max_results]
        sources = {r["url"]: r["title"] for r in results}  # an image cites the page it is on
        return Outcome(results, sources=[{"url": url, "title": title} for url, title in sources.items()])


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
