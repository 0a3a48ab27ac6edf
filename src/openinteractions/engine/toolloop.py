"""The tool loop: within one interaction, the model runs in rounds while it calls server tools.

Each round the backend generates; a call to a server tool (tools/registry.py) is not shown as a function call
but run here: its ``*_call`` step, the tool run, its ``*_result`` step, and then
another round with both steps in the model's history. A client function call among them ends the interaction
with ``requires_action`` once the server tools of that round have run. Rounds and the time spent in tools are
bounded (``tools.max_rounds`` model rounds, ``tools.time_budget_seconds`` of tool time); going over ends the
interaction with status ``budget_exceeded``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter

from ..backends.base import Backend, GenerationRequest, ToolCall, ToolResult
from ..filestores.citations import file_citations
from ..ids import new_call_id
from ..schema.content import UrlCitation
from ..schema.steps import Step
from ..tools.kind import Outcome, ServerTool, ToolGroup
from ..tools.registry import SERVER_TOOLS
from .assembler import Assembler
from .steps import ServerCall, StepWriter

_steps = TypeAdapter(list[Step])
Tools = dict[str, ServerTool | ToolGroup]


def groups(tools: Tools) -> list[ToolGroup]:
    return [tool for tool in tools.values() if isinstance(tool, ToolGroup)]


def runnable(tools: Tools) -> dict[str, ServerTool]:
    """The tools the model can call now (a group's, once listed)."""
    return {name: tool for name, tool in tools.items() if not isinstance(tool, ToolGroup)}


def prelude(tools: Tools, inputs: list[Step]) -> list[tuple[ServerTool, dict[str, Any]]]:
    """The calls the server makes itself before the model starts (url_context reads the prompt's URLs)."""
    calls = ((tool, tool.prelude(inputs)) for tool in runnable(tools).values())
    return [(tool, arguments) for tool, arguments in calls if arguments is not None]


class BudgetExceeded(Exception):
    pass


class ToolLoop:
    def __init__(
        self,
        tools: Tools,
        backend: Backend,
        generation: GenerationRequest,
        writer: StepWriter,
        assembler: Assembler,
        *,
        max_rounds: int,
        time_budget: float,
        base: list[Step] | None = None,
        round_done: Callable[[], None] | None = None,
    ) -> None:
        """``base``: the history before this interaction's own steps (the generation's, unless a run taken
        over after a crash has set that to where it stopped)."""
        self.tools = tools
        self.backend = backend
        self.generation = generation
        self.writer = writer
        self.assembler = assembler
        self.max_rounds = max_rounds
        self.time_left = time_budget  # tool time only: the model's own time is the run's timeout
        self.sources: dict[str, str] = {}  # url -> title, of everything the model was given
        self.chunks: list[dict[str, Any]] = []  # the file_search result items the model was given
        self._base = list(generation.history if base is None else base)
        self._round_done = round_done  # called once a round that called server tools has generated
        writer.server_tools = frozenset(tools)

    async def run(
        self,
        one_round: Callable[[], Awaitable[None]],
        inputs: list[Step],
        ready: Callable[[], Awaitable[None]],
        first_round: int | None = None,
        interrupted: ServerCall | None = None,
    ) -> None:
        """``ready`` is awaited before the loop emits steps of its own (the row must be stored first).
        ``first_round``: a run taken over after a crash goes on with that round (the generation is set up).
        ``interrupted``: that run's log stops at this server tool's call step: the tool runs again and its
        result is logged, then the round goes on (the other calls of its round, never logged, are left to the
        model, which sees every result so far)."""
        await self._list_groups(ready, fresh=first_round is None)
        if first_round is None and await self._prelude(inputs, ready):
            self._next_round(0)
        if first_round is not None:
            self._recall_sources()
        if interrupted is not None:
            await self._execute(interrupted, logged=True)
            if self.writer.function_calls:
                return
            self._next_round(first_round or 0)
        for number in range(first_round or 0, self.max_rounds):
            self.generation.round = number
            await one_round()
            calls = await self.writer.take_server_calls()
            if not calls:
                await self._cite()
                return
            if self._round_done is not None:
                self._round_done()
            await self.writer.close()
            for call in calls:
                await self._execute(call)
            if self.writer.function_calls:
                return
            if number + 1 == self.max_rounds:
                break
            self._next_round(number + 1)
        raise BudgetExceeded(f"the model was still calling server tools after {self.max_rounds} rounds")

    async def _list_groups(self, ready: Callable[[], Awaitable[None]], fresh: bool) -> None:
        """The request's tool groups (MCP servers) are listed before the model starts. A group that could not
        be listed shows as a failed call, first (a run taken over has it in its log already)."""
        found = groups(self.tools)
        if not found:
            return
        failures = await asyncio.gather(*(group.load() for group in found))
        for group in found:
            del self.tools[group.name]
            self.tools.update(group.tools)
        listed = [tool for group in found for tool in group.tools.values()]
        self.writer.server_tools = frozenset(self.tools)
        self.generation.functions = [*self.generation.functions, *(tool.declaration() for tool in listed)]
        self.generation.server_tools = [*self.generation.server_tools, *(tool.name for tool in listed)]
        self.generation.plan = self.backend.prepare(self.generation)
        if not fresh or not any(failures):
            return
        await ready()
        for group, failed in zip(found, failures, strict=True):
            for fields, error in failed:
                call_id = new_call_id()
                await self.writer.feed(ToolCall(tool=group.step, id=call_id, arguments={}, fields=fields))
                await self.writer.feed(ToolResult(tool=group.step, call_id=call_id, result=error, is_error=True))
        self._next_round(0)

    async def _prelude(self, inputs: list[Step], ready: Callable[[], Awaitable[None]]) -> bool:
        """The calls the server makes before the model starts (the prompt's URLs read, as a url_context call of
        the server's own)."""
        calls = prelude(self.tools, inputs)
        if calls:
            await ready()
        for tool, arguments in calls:
            await self._execute(ServerCall(tool.name, new_call_id(), arguments=arguments))
        return bool(calls)

    async def _execute(self, call: ServerCall, logged: bool = False) -> None:
        """Log the call step (unless ``logged`` already), run the tool, log its result step."""
        tool = self.tools[call.name]
        assert not isinstance(tool, ToolGroup)  # groups are listed before the model can call their tools
        kind = SERVER_TOOLS.of_prefix(tool.step)
        shown, fields = tool.call_view(call.arguments)
        if not logged:
            await self.writer.feed(ToolCall(tool=tool.step, id=call.id, arguments=shown, fields=fields))
        if call.lost:  # the model is told, and calls again in its next round if it still needs to
            lost = kind.lost_result(f"the server restarted while {tool.name} ran, and its call's arguments are not "
                                    "kept: call it again")  # fmt: skip
            await self.writer.feed(ToolResult(tool=tool.step, call_id=call.id, result=lost, is_error=True))
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.time_left):
                outcome = await tool.run(call.arguments)
        except TimeoutError:
            result = kind.timeout_result
            await self.writer.feed(ToolResult(tool=tool.step, call_id=call.id, result=result, is_error=True))
            raise BudgetExceeded("server tools used up tools.time_budget_seconds") from None
        self.time_left -= loop.time() - started
        await self.writer.feed(
            ToolResult(tool=tool.step, call_id=call.id, result=outcome.result, is_error=outcome.is_error)
        )
        self._given(outcome)

    def _given(self, outcome: Outcome) -> None:
        """What a tool gave the model, to cite."""
        for source in outcome.sources or []:
            self.sources.setdefault(source["url"], source["title"])
        if not outcome.is_error:
            self.chunks.extend(outcome.chunks or [])

    def _recall_sources(self) -> None:
        """A run taken over after a crash: what the logged tool results gave the model is cited as before."""
        for step in self.assembler.steps():
            kind = SERVER_TOOLS.of_step(str(step.get("type")))
            recalled = kind.recalled(step) if kind is not None and step["type"].endswith("_result") else None
            if recalled is not None:
                self._given(recalled)

    def _next_round(self, number: int) -> None:
        """The next round sees everything this interaction has produced so far."""
        self.generation.round = number
        self.generation.resume = None
        self.generation.history = self._base + _steps.validate_python(self.assembler.steps())
        self.generation.plan = self.backend.prepare(self.generation)

    async def _cite(self) -> None:
        """An answer given after search results or pages is grounded on them: it cites each source it was
        given, over the whole text."""
        if not (self.sources or self.chunks) or self.writer.open_step != "model_output":
            return
        content = self.assembler.steps()[-1].get("content") or []
        text = content[-1].get("text", "") if content and content[-1].get("type") == "text" else ""
        if not text:
            return
        end = len(text.encode())  # offsets in bytes of UTF-8, as Gemini's grounding segments count them
        citations: list[Any] = [
            UrlCitation(url=url, title=title, start_index=0, end_index=end) for url, title in self.sources.items()
        ]
        if self.chunks:
            citations += file_citations(text, self.chunks, end)
        await self.writer.annotate(citations)
