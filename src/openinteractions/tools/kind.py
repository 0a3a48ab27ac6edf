"""What a server tool is. Each tool's module (tools/google_search.py, tools/code_execution.py, …) defines one
``ServerToolKind`` as ``KIND``, and tools/registry.py names the module. From the kinds:

- the wire schema builds its unions (a request's ``tools``, the steps, the step deltas);
- the validator checks a request's tools (``check``), the toolbox provisions what this server runs
  (``provision``), and each request's run gets the tools it named (``Provision.for_request``);
- the step writer shapes the tool's ``<step>_call`` / ``<step>_result`` steps (``bare``, ``empty_result``);
- the backends render those steps in a model's history (``call_function``, ``result_text``; see
  backends/conversation.py), and a run taken over after a crash reads them back (``logged_arguments``,
  ``recalled``).

A model calls a server tool like a function (``ServerTool.declaration``); the tool loop (engine/toolloop.py)
logs the call step, runs the tool and logs its result step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..errors import invalid_argument
from ..schema.base import WireModel
from ..schema.functions import FunctionTool

if TYPE_CHECKING:
    from ..config import ToolsSettings


@dataclass
class Outcome:
    """What a tool's run gave the model. ``sources`` (url + title) and ``chunks`` (file_search result items) are
    what the answer cites (as url and file citations)."""

    result: Any
    is_error: bool = False
    sources: list[dict[str, str]] | None = None
    chunks: list[dict[str, Any]] | None = None


def string_list(maximum: int, length: int) -> dict[str, Any]:
    """The JSON schema of a function argument that is 1 to ``maximum`` strings of up to ``length`` characters."""
    return {"type": "array", "items": {"type": "string", "maxLength": length}, "minItems": 1, "maxItems": maximum}


class ToolDeclaration(WireModel):
    """The base of every server tool's declaration in a request's ``tools``."""

    type: str


class ToolCallStep(WireModel):
    """The base of every server tool's call step (``<step>_call``)."""

    type: str
    id: str


class ToolResultStep(WireModel):
    """The base of every server tool's result step (``<step>_result``)."""

    type: str
    call_id: str


class ServerTool(Protocol):
    """One server tool as a request's run calls it."""

    name: str  # the function the model calls
    step: str  # the prefix of its steps' types

    def declaration(self) -> FunctionTool: ...

    def call_view(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """What its call step shows: the ``arguments``, and fields beside them."""
        ...

    def prelude(self, inputs: Sequence[Any]) -> dict[str, Any] | None:
        """The arguments of a call the server makes itself before the model starts (None: none)."""
        ...

    async def run(self, arguments: dict[str, Any]) -> Outcome: ...


class BaseServerTool:
    """Defaults for a ``ServerTool``: its call step shows its arguments as they are; no call of its own."""

    name: str
    step: str

    def call_view(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(arguments), {}

    def prelude(self, inputs: Sequence[Any]) -> dict[str, Any] | None:
        return None


@runtime_checkable
class ToolGroup(Protocol):
    """Tools a request names as one group whose members are known once listed (an MCP server's tools). The run
    lists them as it starts; a group that could not be listed shows as a failed call step of its own."""

    name: str
    step: str  # the prefix of its members' steps' types
    tools: dict[str, ServerTool]  # function name → tool, once loaded

    async def load(self) -> list[tuple[dict[str, Any], Any]]:
        """List the members; for each failure, the fields of the call step that shows it and its error."""
        ...

    def logged(self, call: dict[str, Any]) -> tuple[str, ServerTool] | None:
        """A member whose call a run taken over after a crash found logged without its result (None: not
        one of this group's)."""
        ...

    def opens(self, steps: Sequence[dict[str, Any] | None]) -> bool:
        """The log opens with this group's failed listing."""
        ...


class Provision(Protocol):
    """A server tool as this server runs it, built once from the settings."""

    problem: str | None  # why this server cannot run it (None: it can)

    def for_request(self, tool: Any, owner: str) -> ServerTool | ToolGroup:
        """The tool as one request by ``owner`` declared it (an ``ApiError`` if the request cannot use it)."""
        ...

    def close(self) -> None: ...


@dataclass
class Unavailable:
    """A tool this server cannot run, and why."""

    problem: str | None

    def for_request(self, tool: Any, owner: str) -> ServerTool | ToolGroup:
        raise LookupError(f"{tool.type} is unavailable: {self.problem}")

    def close(self) -> None:
        pass


_DeclarationModel = type[ToolDeclaration]  # aliases: in ServerToolKind's body, ``type`` is its field
_CallModel = type[ToolCallStep]
_ResultModel = type[ToolResultStep]
_WireModel = type[WireModel]
_SettingsModel = type[BaseModel]


class ServerToolKind:
    """One server tool: the request field that names it, its steps, how this server runs it and how its steps
    read in a model's history. Subclass it in the tool's module; the defaults suit a tool whose call step has
    ``arguments`` and whose result step has ``result`` and ``is_error``."""

    type: ClassVar[str]  # the request's tool type, and the function the model calls
    request: ClassVar[_DeclarationModel]  # the tool as a request declares it
    call_step: ClassVar[_CallModel]
    result_step: ClassVar[_ResultModel]
    call_delta: ClassVar[_WireModel]
    result_delta: ClassVar[_WireModel]
    bare: ClassVar[bool] = False  # the spec keeps its call step without arguments, its result without is_error
    empty_result: ClassVar[Any] = []  # the result its result step starts with (the delta carries the result)
    timeout_result: ClassVar[Any] = []  # its result when the time budget for server tools ran out
    declared_later: ClassVar[bool] = False  # its functions are known once listed, not when the request comes
    # Its own [tools.<type>] section, where its module declares one (``ToolsSettings.declared`` reads it).
    settings: ClassVar[_SettingsModel | None] = None

    @property
    def step(self) -> str:
        """The prefix of its step types: ``<step>_call``, ``<step>_result``."""
        return self.type

    def provision(self, settings: ToolsSettings, data_dir: Path) -> Provision:
        """What this server runs, from its settings (an ``Unavailable`` with why, if it cannot)."""
        raise NotImplementedError

    def check(self, tool: Any, index: int, taken: set[str]) -> str:
        """Checks a request's declaration needs beyond its schema (a 400 naming the field); the name it takes
        among the request's server tools (``taken``: those taken before it)."""
        if self.type in taken:
            raise invalid_argument(f"'tools[{index}]': the {self.type!r} tool is listed twice")
        return self.type

    def name_clash(self, function: str) -> str | None:
        """Why a client function of the same request cannot have this name (None: it can)."""
        return f"function {function!r} has the name of a server tool sent with it" if function == self.type else None

    def call_function(self, step: Any) -> tuple[str, dict[str, Any]]:
        """The function call its call step was made as (its history as a model reads it)."""
        arguments = getattr(step, "arguments", None)
        if isinstance(arguments, WireModel):
            return self.type, arguments.model_dump(exclude_none=True)
        return self.type, dict(arguments or {})

    def result_text(self, step: Any) -> str:
        """What a model reads of its result step."""
        result = step.result
        if isinstance(result, str):
            return result
        items = [item.wire() if isinstance(item, WireModel) else item for item in result or []]
        return "\n".join(json.dumps(item, ensure_ascii=False) for item in items) or "(nothing)"

    def result_heading(self, step: Any) -> str:
        """How a prompt that renders results as text introduces its result."""
        return f"{self.type} returned:"

    def logged_arguments(self, call: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments to run a logged call step again with (a run taken over after a crash); None where its
        step does not keep them (a bare step): the call is then answered as lost, and the model calls again."""
        return None if self.bare else dict(call.get("arguments") or {})

    def lost_result(self, message: str) -> Any:
        """Its result when a call cannot be run again (``logged_arguments`` is None)."""
        return [{"error": message}]

    def recalled(self, result: dict[str, Any]) -> Outcome | None:
        """What a logged result step gave the model, to cite (a run taken over after a crash)."""
        return None
