"""The ``file_search`` server tool: the model searches the request's file search stores with its own queries;
the result step lists the chunks found; the answer cites, as ``file_citation`` annotations, the chunks it drew
on (those that share the most words with it)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ..errors import ApiError, invalid_argument
from ..schema.content import FileCitation
from ..schema.tools import FileSearchTool, FunctionTool
from ..tools.builtin import Outcome
from .catalog import Found
from .metadata_filter import FilterError, metadata_dict, parse
from .service import FileStores

_WORD = re.compile(r"\w{4,}")
_COMMON = frozenset(
    [
        "that",
        "this",
        "with",
        "from",
        "have",
        "were",
        "which",
        "their",
        "there",
        "about",
        "would",
        "these",
        "other",
        "into",
        "than",
        "then",
        "they",
        "them",
        "what",
        "when",
        "where",
        "your",
        "also",
        "been",
        "more",
        "some",
        "such",
        "only",
        "over",
        "most",
    ]
)
_MAX_CITED = 5


def check_tool(tool: FileSearchTool, index: int, max_top_k: int = 100) -> None:
    """The checks a request's file_search tool needs before a run starts (a 400 naming the field)."""
    where = f"tools[{index}]"
    if not tool.file_search_store_names:
        raise invalid_argument(f"'{where}.file_search_store_names' must name at least one file search store")
    for name in tool.file_search_store_names:
        if not name.startswith("fileSearchStores/"):
            raise invalid_argument(f"'{where}.file_search_store_names': {name!r} is not a fileSearchStores/… name")
    if tool.top_k is not None and not 1 <= tool.top_k <= max_top_k:
        raise invalid_argument(f"'{where}.top_k' must be from 1 to {max_top_k}")
    if tool.metadata_filter:
        try:
            parse(tool.metadata_filter)
        except FilterError as exc:
            raise invalid_argument(f"'{where}.metadata_filter': {exc}") from None


class FileSearch:
    name = "file_search"

    def __init__(self, stores: FileStores, owner: str, tool: FileSearchTool) -> None:
        self.stores = stores
        self.owner = owner
        self.store_names = list(tool.file_search_store_names or [])
        self.top_k = min(tool.top_k or stores.settings.top_k, stores.settings.max_top_k)
        self.metadata_filter = tool.metadata_filter

    def declaration(self) -> FunctionTool:
        return FunctionTool(
            name=self.name,
            description="Search the user's documents. Returns the passages that match, with the document each is from.",
            parameters={
                "type": "object",
                "properties": {
                    "queries": {"type": "array", "items": {"type": "string", "maxLength": 200}, "minItems": 1,
                                "maxItems": 3},
                },
                "required": ["queries"],
            },
        )  # fmt: skip

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        queries = arguments.get("queries") or ([arguments["query"]] if arguments.get("query") else [])
        for query in queries if isinstance(queries, list) else [queries]:
            try:
                found = await self.stores.search(
                    self.owner, self.store_names, str(query), self.top_k, self.metadata_filter
                )
            except (ApiError, sqlite3.Error, FilterError) as exc:  # a store deleted since the request came, say
                message = exc.message if isinstance(exc, ApiError) else str(exc)
                return Outcome([{"error": f"file search failed: {message}"}], is_error=True)
            for chunk in found:
                item = result_item(chunk)
                if item["chunk"] not in seen:
                    seen.add(item["chunk"])
                    items.append(item)
        return Outcome(items[: self.top_k * 3])


def result_item(chunk: Found) -> dict[str, Any]:
    """A ``file_search_result`` item: the chunk's text, its document and store, its page in a PDF."""
    item: dict[str, Any] = {
        "text": chunk.text,
        "title": chunk.document_title,
        "document_uri": chunk.document,
        "file_search_store": chunk.store,
        "chunk": f"{chunk.document}/chunks/{chunk.id}",
    }
    if chunk.page is not None:
        item["page_number"] = chunk.page
    if chunk.metadata:
        item["custom_metadata"] = metadata_dict(chunk.metadata)
    return item


def result_text(items: list[dict[str, Any]]) -> str:
    """What the model reads of a file_search result."""
    lines = []
    for item in items:
        if "error" in item:
            lines.append(f"error: {item['error']}")
            continue
        page = f", page {item['page_number']}" if item.get("page_number") else ""
        lines.append(f"- [{item.get('title') or item.get('document_uri', '')}{page}] {item.get('text', '')}")
    return "\n".join(lines) or "(no matching passages)"


def file_citations(answer: str, items: list[dict[str, Any]], end: int) -> list[FileCitation]:
    """The chunks an answer drew on: those sharing the most words (of 4 letters or more, common ones aside)
    with it, best first; the first chunk found if none shares any. Each cites the whole text, ``end`` bytes."""
    words = set(_WORD.findall(answer.lower())) - _COMMON
    scored = []
    for position, item in enumerate(i for i in items if "text" in i):
        shared = len(words & set(_WORD.findall(str(item["text"]).lower())))
        scored.append((-shared, position, item))
    scored.sort(key=lambda entry: (entry[0], entry[1]))
    best = -scored[0][0] if scored else 0
    chosen = [item for shared, _, item in scored if -shared >= max(1, best // 2)][:_MAX_CITED] or [
        item for _, _, item in scored[:1]
    ]
    return [citation(item, end) for item in chosen]


def citation(item: dict[str, Any], end: int) -> FileCitation:
    return FileCitation(
        file_name=item.get("title"),
        document_uri=item.get("document_uri"),
        source=item.get("text"),
        page_number=item.get("page_number"),
        custom_metadata=item.get("custom_metadata"),
        start_index=0,
        end_index=end,
    )
