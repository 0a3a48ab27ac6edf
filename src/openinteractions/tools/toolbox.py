"""Which server tools this server can run, built from the [tools] settings, and the set one request asked for."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import CodeExecutionSettings, FileSearchSettings, SearchSettings, ToolsSettings
from ..errors import not_found
from ..filestores import FileSearch, FileStores
from ..schema.tools import FileSearchTool, GoogleSearchTool, McpServerTool, Tool
from .builtin import CodeExecution, GoogleSearch, LocalSearch, SearxngSearch, ServerTool, UrlContext
from .mcp import Endpoint, McpConnector, McpServers
from .net import AddressPolicy, SafeFetcher
from .reader import DocumentReader
from .sandbox import Sandbox, SandboxLimits, SandboxUnavailable
from .search_index import LocalIndex

logger = logging.getLogger(__name__)


class Toolbox:
    def __init__(self, settings: ToolsSettings, data_dir: Path) -> None:
        self.settings = settings
        self.unavailable: dict[str, str] = {}
        self.index: LocalIndex | None = None
        self._search = self._search_provider(settings.google_search, data_dir)
        self._search_results = settings.google_search.max_results
        self._code = self._code_execution(settings.code_execution)
        self._chart_problem: str | None = None  # "" once the sandbox was seen to draw charts
        self._url: UrlContext | None = None
        url = settings.url_context
        if url.enabled:
            policy = AddressPolicy(url.allow_networks)
            fetcher = SafeFetcher(
                policy, max_bytes=url.max_bytes, timeout=url.timeout_seconds, max_redirects=url.max_redirects
            )
            self._url = UrlContext(fetcher, url.max_chars)
        else:
            self.unavailable["url_context"] = "disabled by tools.url_context.enabled = false"
        self._mcp = McpConnector(settings.mcp_server) if settings.mcp_server.enabled else None
        if self._mcp is None:
            self.unavailable["mcp_server"] = "disabled by tools.mcp_server.enabled = false"
        self.file_stores = self._file_stores(settings.file_search, data_dir)

    def _file_stores(self, settings: FileSearchSettings, data_dir: Path) -> FileStores | None:
        if not settings.enabled:
            self.unavailable["file_search"] = "disabled by tools.file_search.enabled = false"
            return None
        stores = FileStores(settings, data_dir)
        if stores.embedder_problem:
            logger.warning("file_search: BM25 only, no embeddings: %s", stores.embedder_problem)
        return stores

    def _code_execution(self, code: CodeExecutionSettings) -> CodeExecution | None:
        if not code.enabled:
            self.unavailable["code_execution"] = "disabled by tools.code_execution.enabled = false"
            return None
        limits = SandboxLimits(
            code.wall_seconds, code.cpu_seconds, code.memory_mb, code.max_processes, code.max_file_mb,
            code.max_output_bytes, code.disk_mb, code.max_open_files, code.sandbox_memory_mb,
        )  # fmt: skip
        sandbox = Sandbox(limits, python=code.python, user=code.user, concurrency=code.concurrency)
        try:
            sandbox.check()
        except SandboxUnavailable as exc:
            self.unavailable["code_execution"] = str(exc)
            return None
        return CodeExecution(sandbox)

    def _search_provider(self, search: SearchSettings, data_dir: Path) -> LocalSearch | SearxngSearch | None:
        if search.provider == "local":
            self.index = LocalIndex(data_dir / "search.db")
            return LocalSearch(self.index)
        if search.provider == "searxng":
            if not search.searxng_url:
                self.unavailable["google_search"] = "tools.google_search.searxng_url is not set"
                return None
            return SearxngSearch(search.searxng_url, search.timeout_seconds)
        self.unavailable["google_search"] = "no search provider (tools.google_search.provider)"
        return None

    def problem(self, tool_type: str) -> str | None:
        """Why this server cannot run ``tool_type``, or None if it can."""
        return self.unavailable.get(tool_type)

    def for_request(self, tools: list[Tool], owner: str = "public") -> dict[str, ServerTool]:
        """The server tools of one request by ``owner``; a file search store it cannot use is a 404."""
        selected: dict[str, ServerTool] = {}
        for tool in tools:
            if isinstance(tool, GoogleSearchTool) and self._search is not None:
                search = GoogleSearch(self._search, self._search_results)
                search.search_types = list(tool.search_types or ["web_search"])
                selected["google_search"] = search
            elif tool.type == "code_execution" and self._code is not None:
                selected["code_execution"] = self._code
            elif tool.type == "url_context" and self._url is not None:
                selected["url_context"] = self._url
            elif isinstance(tool, FileSearchTool) and self.file_stores is not None:
                missing = self.file_stores.missing_store(owner, tool.file_search_store_names or [])
                if missing is not None:
                    raise not_found(f"no such file search store: {missing}")
                selected["file_search"] = FileSearch(self.file_stores, owner, tool)
        servers = [Endpoint.of(tool) for tool in tools if isinstance(tool, McpServerTool)]
        if servers and self._mcp is not None:
            selected[McpServers.name] = McpServers(self._mcp, servers)  # its tools are listed as the run starts
        return selected

    def charts(self) -> CodeExecution | None:
        """The sandbox that draws a research report's charts (code_execution's)."""
        return self._code

    async def chart_problem(self) -> str | None:
        """Why this server cannot draw charts, or None: it needs code_execution, and matplotlib in the sandbox's
        Python (asked of the sandbox once)."""
        if self._code is None:
            return f"code_execution is unavailable: {self.unavailable.get('code_execution')}"
        if self._chart_problem is None:
            execution = await self._code.sandbox.run_python("import matplotlib")
            python = self.settings.code_execution.python
            found = f"matplotlib does not import in the sandbox's {python} (Debian: apt-get install python3-matplotlib)"
            self._chart_problem = "" if execution.ok else found
        return self._chart_problem or None

    def agent_tools(self, max_chars: int) -> tuple[GoogleSearch | None, DocumentReader]:
        """A research agent's search and reader (the reader reads local-index documents and, with url_context
        enabled, web pages)."""
        search = GoogleSearch(self._search, self._search_results) if self._search is not None else None
        return search, DocumentReader(self.index, self._url, max_chars)

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
        if self.file_stores is not None:
            self.file_stores.close()
