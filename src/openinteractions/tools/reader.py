"""The agent's reader: a document in full, from the local index (``file://`` URLs of indexed files) or the web
through url_context's fetcher (with its address policy). Its results have url_context's shape."""

from __future__ import annotations

import asyncio
from typing import Any

from .kind import Outcome
from .search_index import LocalIndex
from .url_context import UrlContext


class DocumentReader:
    name = "url_context"

    def __init__(self, index: LocalIndex | None, web: UrlContext | None, max_chars: int) -> None:
        self.index = index
        self.web = web
        self.max_chars = max_chars

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        urls = [str(u) for u in arguments.get("urls") or []]
        pages = await asyncio.gather(*(self._one(url) for url in urls))
        sources = [{"url": p["url"], "title": p.get("title") or p["url"]} for p in pages if p["status"] == "success"]
        return Outcome(pages, is_error=bool(pages) and all(p["status"] != "success" for p in pages), sources=sources)

    async def _one(self, url: str) -> dict[str, Any]:
        if url.startswith("file:"):
            found = await asyncio.to_thread(self.index.document, url) if self.index is not None else None
            if found is None:
                return {"url": url, "status": "error", "error": "not a document of the local index"}
            title, text = found
            return {"url": url, "status": "success", "title": title, "text": text[: self.max_chars]}
        if self.web is None:
            return {"url": url, "status": "error", "error": "url_context is disabled on this server"}
        return await self.web.read(url)
