"""Which server tools this server can run, provisioned once from the [tools] settings (each tool's kind builds
its own: tools/registry.py), and the set one request asked for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ToolsSettings
from .code_execution import CodeExecution, CodeProvision
from .file_search import FileStoresProvision
from .google_search import GoogleSearch, SearchProvision
from .kind import Provision, ServerTool, ToolGroup
from .reader import DocumentReader
from .registry import SERVER_TOOLS
from .url_context import UrlContext

if TYPE_CHECKING:
    from ..filestores.service import FileStores


class Toolbox:
    def __init__(self, settings: ToolsSettings, data_dir: Path) -> None:
        self.settings = settings
        self.provisions: dict[str, Provision] = {kind.type: kind.provision(settings, data_dir) for kind in SERVER_TOOLS}

    def problem(self, tool_type: str) -> str | None:
        """Why this server cannot run ``tool_type``, or None if it can."""
        provision = self.provisions.get(tool_type)
        return provision.problem if provision is not None else f"{tool_type!r} is not a server tool"

    def for_request(self, tools: list[Any], owner: str = "public") -> dict[str, ServerTool | ToolGroup]:
        """The server tools of one request by ``owner``, by the function the model calls (a group by its name).
        A tool the request cannot use is an ``ApiError`` (a file search store it cannot see: 404)."""
        selected: dict[str, ServerTool | ToolGroup] = {}
        for tool in tools:
            provision = self.provisions.get(tool.type)
            if provision is not None and provision.problem is None:
                runnable = provision.for_request(tool, owner)
                selected[runnable.name] = runnable
        return selected

    @property
    def file_stores(self) -> FileStores | None:
        """The file search stores (the ``fileSearchStores`` resource), or None where file_search is off."""
        stores = self.provisions["file_search"]
        return stores.stores if isinstance(stores, FileStoresProvision) else None

    def charts(self) -> CodeExecution | None:
        """The sandbox that draws a research report's charts (code_execution's)."""
        code = self.provisions["code_execution"]
        return code.execution if isinstance(code, CodeProvision) else None

    async def chart_problem(self) -> str | None:
        """Why this server cannot draw charts, or None: it needs code_execution, and matplotlib in the sandbox."""
        code = self.provisions["code_execution"]
        if not isinstance(code, CodeProvision):
            return f"code_execution is unavailable: {code.problem}"
        return await code.chart_problem()

    def agent_tools(self, max_chars: int) -> tuple[GoogleSearch | None, DocumentReader]:
        """A research agent's search and reader (the reader reads local-index documents and, with url_context
        enabled, web pages)."""
        search = self.provisions["google_search"]
        url = self.provisions["url_context"]
        found = search.search() if isinstance(search, SearchProvision) else None
        index = search.index if isinstance(search, SearchProvision) else None
        return found, DocumentReader(index, url if isinstance(url, UrlContext) else None, max_chars)

    def close(self) -> None:
        for provision in self.provisions.values():
            provision.close()
