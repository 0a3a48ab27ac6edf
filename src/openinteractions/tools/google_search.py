"""The ``google_search`` server tool: web and image search, over the local index (``openinteractions index``) or
a self-hosted SearxNG. One call runs one search type: the request's tool lists the types (``search_types``,
web_search if none); with more than one, the model picks one per call with its ``search_type`` argument, and the
call step shows it as the step's ``search_type``."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import httpx
from pydantic import Field

from ..egress import Egress, OriginPolicy
from ..errors import not_supported
from ..schema.base import OpenRecord, QueryArguments, WireModel
from ..schema.functions import FunctionTool
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
from .net import Refused

if TYPE_CHECKING:
    from ..config import SearchSettings, ToolsSettings
    from .search_index import Hit, LocalIndex

SearchType = Literal["web_search", "image_search", "enterprise_web_search"]


class GoogleSearchTool(ToolDeclaration):
    type: Literal["google_search"] = "google_search"
    search_types: Annotated[list[SearchType], Field(max_length=3)] | None = None


class GoogleSearchResultItem(OpenRecord):
    search_suggestions: str | None = None


class GoogleSearchCallStep(ToolCallStep):
    type: Literal["google_search_call"] = "google_search_call"
    id: str
    arguments: QueryArguments
    search_type: SearchType | None = None
    signature: str | None = None


class GoogleSearchResultStep(ToolResultStep):
    type: Literal["google_search_result"] = "google_search_result"
    call_id: str
    result: list[GoogleSearchResultItem]
    is_error: bool | None = None
    signature: str | None = None


class GoogleSearchCallDelta(WireModel):
    type: Literal["google_search_call"] = "google_search_call"
    arguments: QueryArguments
    signature: str | None = None


class GoogleSearchResultDelta(WireModel):
    type: Literal["google_search_result"] = "google_search_result"
    result: list[GoogleSearchResultItem]
    is_error: bool | None = None
    signature: str | None = None


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
    from .search_index import Hit

    url = item.get("url")
    return Hit(url, item.get("title") or url, item.get("content") or "", item.get("score") or 0.0) if url else None


def _image_hit(item: dict[str, Any]) -> Hit | None:
    """A SearxNG image result (its ``images.html`` template): ``img_src`` is the image, ``url`` the page showing
    it, ``thumbnail_src`` (``thumbnail`` in newer engines) a small copy."""
    from .search_index import Hit

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


class GoogleSearch(BaseServerTool):
    """google_search as one request declared it (its search types)."""

    name = step = "google_search"

    def __init__(self, provider: SearchProvider, max_results: int, search_types: list[str] | None = None) -> None:
        self.provider = provider
        self.max_results = max_results
        self.search_types = list(search_types or ["web_search"])

    def declaration(self) -> FunctionTool:
        properties: dict[str, Any] = {"queries": string_list(3, 120)}
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

    def call_view(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A call's step shows its ``arguments`` (the queries), and ``search_type`` beside them."""
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


class SearchProvision:
    """The search provider of this server: the local index, or SearxNG."""

    def __init__(self, settings: SearchSettings, data_dir: Path) -> None:
        self.settings = settings
        self.problem: str | None = None
        self.index: LocalIndex | None = None
        self.provider: SearchProvider | None = None
        if settings.provider == "local":
            from .search_index import LocalIndex

            self.index = LocalIndex(data_dir / "search.db")
            self.provider = LocalSearch(self.index)
        elif settings.provider == "searxng" and settings.searxng_url:
            self.provider = SearxngSearch(settings.searxng_url, settings.timeout_seconds)
        elif settings.provider == "searxng":
            self.problem = "tools.google_search.searxng_url is not set"
        else:
            self.problem = "no search provider (tools.google_search.provider)"

    def search(self, search_types: list[str] | None = None) -> GoogleSearch | None:
        if self.provider is None:
            return None
        return GoogleSearch(self.provider, self.settings.max_results, search_types)

    def for_request(self, tool: GoogleSearchTool, owner: str) -> GoogleSearch:
        search = self.search(list(tool.search_types or ["web_search"]))
        if search is None:
            raise LookupError(f"google_search is unavailable: {self.problem}")
        return search

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


class GoogleSearchKind(ServerToolKind):
    type = "google_search"
    request = GoogleSearchTool
    call_step = GoogleSearchCallStep
    result_step = GoogleSearchResultStep
    call_delta = GoogleSearchCallDelta
    result_delta = GoogleSearchResultDelta

    def provision(self, settings: ToolsSettings, data_dir: Path) -> SearchProvision | Unavailable:
        return SearchProvision(settings.google_search, data_dir)

    def check(self, tool: GoogleSearchTool, index: int, taken: set[str]) -> str:
        if "enterprise_web_search" in (tool.search_types or []):
            raise not_supported(f"'tools[{index}].search_types' 'enterprise_web_search'",
                                "not offered by this server (no enterprise index: web_search and image_search "
                                "search the local index or SearxNG)")  # fmt: skip
        return super().check(tool, index, taken)

    def result_text(self, step: GoogleSearchResultStep) -> str:
        lines = []
        for item in step.result:
            record = item.wire()
            line = f"- {record.get('title', '')} ({record.get('url', '')}): {record.get('snippet', '')}"
            lines.append(line + (f" [image: {record['image_url']}]" if record.get("image_url") else ""))
        return "\n".join(lines) or "(nothing)"

    def logged_arguments(self, call: dict[str, Any]) -> dict[str, Any]:
        arguments = dict(call.get("arguments") or {})
        if call.get("search_type"):  # shown beside the arguments: the type the call runs
            arguments["search_type"] = call["search_type"]
        return arguments

    def recalled(self, result: dict[str, Any]) -> Outcome | None:
        return recalled_sources(result)


def recalled_sources(result: dict[str, Any]) -> Outcome | None:
    """The pages a logged search or url_context result gave the model (its successful items)."""
    if result.get("is_error"):
        return None
    sources = [
        {"url": item["url"], "title": item.get("title") or item["url"]}
        for item in result.get("result") or []
        if isinstance(item, dict) and item.get("url") and item.get("status", "success") == "success"
    ]
    return Outcome(result.get("result"), sources=sources)


KIND = GoogleSearchKind()
