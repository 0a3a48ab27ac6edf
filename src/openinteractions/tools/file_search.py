"""The ``file_search`` server tool: the model searches the request's file search stores (filestores/) with its
own queries; the result step lists the chunks found; the answer cites the chunks it drew on as
``file_citation`` annotations (filestores/citations.py). The spec keeps its steps bare: the call step carries
only its id, the result no ``is_error``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from ..errors import ApiError, invalid_argument, not_found
from ..schema.base import OpenRecord, WireModel
from ..schema.functions import FunctionTool
from .kind import BaseServerTool, Outcome, ServerToolKind, ToolCallStep, ToolDeclaration, ToolResultStep, Unavailable

if TYPE_CHECKING:
    from ..config import ToolsSettings
    from ..filestores.catalog import Found
    from ..filestores.service import FileStores


class FileSearchTool(ToolDeclaration):
    type: Literal["file_search"] = "file_search"
    file_search_store_names: Annotated[list[str], Field(max_length=64)] | None = None
    metadata_filter: str | None = None
    top_k: int | None = None


class FileSearchCallStep(ToolCallStep):
    type: Literal["file_search_call"] = "file_search_call"
    id: str
    signature: str | None = None


class FileSearchResultStep(ToolResultStep):
    type: Literal["file_search_result"] = "file_search_result"
    call_id: str
    result: list[OpenRecord] | None = None
    signature: str | None = None


class FileSearchCallDelta(WireModel):
    type: Literal["file_search_call"] = "file_search_call"
    signature: str | None = None


class FileSearchResultDelta(WireModel):
    type: Literal["file_search_result"] = "file_search_result"
    result: list[OpenRecord]
    signature: str | None = None


class FileSearch(BaseServerTool):
    name = step = "file_search"

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
        from ..filestores.metadata_filter import FilterError

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
        items = items[: self.top_k * 3]
        return Outcome(items, chunks=items)


def result_item(chunk: Found) -> dict[str, Any]:
    """A ``file_search_result`` item: the chunk's text, its document and store, its page in a PDF."""
    from ..filestores.metadata_filter import metadata_dict

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


class FileStoresProvision:
    """This server's file search stores (also served as the ``fileSearchStores`` resource)."""

    def __init__(self, stores: FileStores) -> None:
        self.stores = stores
        self.problem: str | None = None

    def for_request(self, tool: FileSearchTool, owner: str) -> FileSearch:
        missing = self.stores.missing_store(owner, tool.file_search_store_names or [])
        if missing is not None:
            raise not_found(f"no such file search store: {missing}")
        return FileSearch(self.stores, owner, tool)

    def close(self) -> None:
        self.stores.close()


class FileSearchKind(ServerToolKind):
    type = "file_search"
    request = FileSearchTool
    call_step = FileSearchCallStep
    result_step = FileSearchResultStep
    call_delta = FileSearchCallDelta
    result_delta = FileSearchResultDelta
    bare = True

    def provision(self, settings: ToolsSettings, data_dir: Path) -> FileStoresProvision | Unavailable:
        import logging

        from ..filestores.service import FileStores

        if not settings.file_search.enabled:
            return Unavailable("disabled by tools.file_search.enabled = false")
        stores = FileStores(settings.file_search, data_dir)
        if stores.embedder_problem:
            logging.getLogger(__name__).warning("file_search: BM25 only, no embeddings: %s", stores.embedder_problem)
        return FileStoresProvision(stores)

    def check(self, tool: FileSearchTool, index: int, taken: set[str], max_top_k: int = 100) -> str:
        from ..filestores.metadata_filter import FilterError, parse

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
        return super().check(tool, index, taken)

    def call_function(self, step: FileSearchCallStep) -> tuple[str, dict[str, Any]]:
        return self.type, {}  # the spec's call step keeps no arguments

    def result_text(self, step: FileSearchResultStep) -> str:
        return result_text([item.wire() for item in step.result or []])

    def recalled(self, result: dict[str, Any]) -> Outcome | None:
        items = list(result.get("result") or [])
        return Outcome(items, chunks=items)


KIND = FileSearchKind()
