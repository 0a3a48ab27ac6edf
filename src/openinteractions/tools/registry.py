"""The server tools this server knows, by module: adding a tool is its module (see tools/kind.py) and one line
here. The wire schema's unions, the validator, the toolbox, the step writer and the backends all read this."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module

from ..schema.base import WireModel
from .kind import ServerToolKind

MODULES = (
    "openinteractions.tools.google_search",
    "openinteractions.tools.code_execution",
    "openinteractions.tools.url_context",
    "openinteractions.tools.file_search",
    "openinteractions.tools.mcp_server",
)


class Registry:
    def __init__(self, modules: tuple[str, ...]) -> None:
        kinds: list[ServerToolKind] = [import_module(module).KIND for module in modules]
        self._by_type = {kind.type: kind for kind in kinds}
        self._by_step = {kind.step: kind for kind in kinds}

    def __iter__(self) -> Iterator[ServerToolKind]:
        return iter(self._by_type.values())

    def get(self, tool_type: str) -> ServerToolKind | None:
        """The kind a request's tool of this type is (None: not a server tool)."""
        return self._by_type.get(tool_type)

    def of_step(self, step_type: str) -> ServerToolKind | None:
        """The kind whose call or result step this is (None: not a server tool's step)."""
        prefix, _, suffix = step_type.rpartition("_")
        return self._by_step.get(prefix) if suffix in ("call", "result") else None

    def of_prefix(self, step: str) -> ServerToolKind:
        """The kind whose steps' types start with ``step``."""
        return self._by_step[step]

    def requests(self) -> tuple[type[WireModel], ...]:
        return tuple(kind.request for kind in self)

    def steps(self) -> tuple[type[WireModel], ...]:
        return tuple(model for kind in self for model in (kind.call_step, kind.result_step))

    def deltas(self) -> tuple[type[WireModel], ...]:
        return tuple(model for kind in self for model in (kind.call_delta, kind.result_delta))


SERVER_TOOLS = Registry(MODULES)
