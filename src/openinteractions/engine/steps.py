"""The step state machine: model events in, ``step.start`` / ``step.delta`` / ``step.stop`` events out.

One step is open at a time and indices count up from the first step of the interaction. A thought step always
ends with exactly one ``thought_signature`` delta; a function call's ``arguments_delta`` fragments
concatenate to exactly the JSON object its final ``arguments`` hold.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from ..backends.base import (
    BackendError,
    CallArguments,
    CallStart,
    ForeignEvent,
    ImageChunk,
    ModelEvent,
    StepBreak,
    TextChunk,
    ThoughtChunk,
    ToolCall,
    ToolResult,
)
from ..ids import new_call_id
from ..schema.deltas import Delta, ImageDelta, TextAnnotationDelta, ThoughtSignatureDelta
from ..schema.events import ChunkEvent, Event, FutureEvent, StepDeltaEvent, StepStartEvent, StepStopEvent
from ..schema.steps import FunctionCallStep, ModelOutputStep, Step, ThoughtStep
from ..tools.registry import SERVER_TOOLS
from .signatures import ThoughtSigner

_step = TypeAdapter(Step)
_delta_adapter = TypeAdapter(Delta)

_DELTA_REPEATS = frozenset({"name", "server_name"})  # fields of a call step that its delta carries too (MCP's)
Emit = Callable[[Event | ChunkEvent], Awaitable[Any]]


@dataclass
class ServerCall:
    name: str
    id: str
    fragments: list[str] = field(default_factory=list)
    arguments: dict[str, Any] = field(default_factory=dict)
    lost: bool = False  # its arguments were not logged: a run taken over cannot run it again


class StepWriter:
    def __init__(self, emit: Emit, signer: ThoughtSigner, summaries: bool, first_index: int = 0) -> None:
        self._emit = emit
        self._signer = signer
        self._summaries = summaries
        self._next_index = first_index
        self._open: str | None = None
        self._thought: list[str] = []
        self._arguments: list[str] = []
        self.function_calls: list[FunctionCallStep] = []
        self.server_tools: frozenset[str] = frozenset()
        self._server_calls: list[ServerCall] = []

    def resume_at(self, next_index: int, open_step: str | None = None, thought: str = "") -> None:
        """A run taken over after a crash: ``next_index`` steps are logged, the last one still open if
        ``open_step`` names its type (a thought's text so far, if its summary showed it, is ``thought``)."""
        self._next_index = next_index
        self._open = open_step
        self._thought = [thought] if thought else []

    @property
    def open_step(self) -> str | None:
        return self._open

    async def feed(self, event: ModelEvent) -> None:
        match event:
            case TextChunk(text=text):
                await self.text(text)
            case ThoughtChunk(text=text):
                await self._ensure("thought")
                text = _valid_utf8(text)
                self._thought.append(text)
                if text and self._summaries:
                    await self._emit(ChunkEvent(self._next_index - 1, "thought_summary", text))
            case CallStart(name=name, id=call_id) if name in self.server_tools:
                await self.close()
                self._open = "server_call"  # no step yet: the run emits the tool's own steps
                self._server_calls.append(ServerCall(name, call_id or new_call_id()))
            case CallStart(name=name, id=call_id):
                await self.close()
                step = FunctionCallStep(id=call_id or new_call_id(), name=name, arguments={})
                self.function_calls.append(step)
                await self._start(step)
            case CallArguments(fragment=fragment) if self._open == "server_call":
                self._server_calls[-1].fragments.append(fragment)
            case CallArguments(fragment=fragment):
                if self._open != "function_call":
                    raise BackendError("function arguments arrived outside a function call")
                fragment = _valid_utf8(fragment)
                self._arguments.append(fragment)
                if fragment:
                    await self._emit(ChunkEvent(self._next_index - 1, "arguments_delta", fragment))
            case ToolCall(tool=tool, id=call_id, arguments=arguments, fields=fields):
                repeated = {k: v for k, v in fields.items() if k in _DELTA_REPEATS}
                shown = {} if SERVER_TOOLS.of_prefix(tool).bare else {"arguments": arguments}
                await self._whole_step(
                    {"type": f"{tool}_call", "id": call_id, **{k: {} for k in shown}, **fields},
                    {"type": f"{tool}_call", **shown, **repeated},
                )
            case ToolResult(tool=tool, call_id=call_id, result=result, is_error=is_error):
                kind = SERVER_TOOLS.of_prefix(tool)
                empty, error = kind.empty_result, {} if kind.bare else {"is_error": is_error}
                await self._whole_step(
                    {"type": f"{tool}_result", "call_id": call_id, "result": empty},
                    {"type": f"{tool}_result", "result": result, **error},
                )
            case ImageChunk(data=data, mime_type=mime_type):
                await self.media(ImageDelta(data=data, mime_type=mime_type))
            case StepBreak():
                await self.close()
            case ForeignEvent(payload=payload):
                await self._emit(FutureEvent.model_validate(payload))  # type: ignore[arg-type]

    def conceal(self, text: str) -> None:
        """Reasoning of the open thought that is sealed into its signature but not shown as a summary (an
        agent's working state, which a server that takes the run over reads back from the signature)."""
        if self._open == "thought":
            self._thought.append(text)

    async def text(self, text: str) -> None:
        """The hot path: a chunk of model output."""
        if self._open != "model_output":
            await self._ensure("model_output")
        if text:
            await self._emit(ChunkEvent(self._next_index - 1, "text", _valid_utf8(text)))

    async def media(self, delta: ImageDelta) -> None:
        """An image in the model output (a chart in a research report)."""
        if self._open != "model_output":
            await self._ensure("model_output")
        await self._delta(delta)

    async def take_server_calls(self) -> list[ServerCall]:
        """The server-tool calls of this round, parsed; the run executes them."""
        if self._open == "server_call":
            await self.close()
        calls, self._server_calls = self._server_calls, []
        for call in calls:
            call.arguments = _parse_arguments("".join(call.fragments), call.name)
        return calls

    async def annotate(self, annotations: list[Any]) -> None:
        """Citations for the open model output (its text so far)."""
        if self._open == "model_output" and annotations:
            await self._delta(TextAnnotationDelta(annotations=annotations))

    async def close(self, *, strict: bool = True) -> None:
        """Close the open step. ``strict=False`` is for failure paths: no validation, no exceptions."""
        kind, self._open = self._open, None
        if kind is None or kind == "server_call":
            return
        index = self._next_index - 1
        if kind == "thought":
            signature = self._signer.sign("".join(self._thought))
            self._thought = []
            await self._emit(StepDeltaEvent(index=index, delta=ThoughtSignatureDelta(signature=signature)))
        failure: BackendError | None = None
        if kind == "function_call":
            text, self._arguments = "".join(self._arguments), []
            call = self.function_calls[-1]
            call.arguments = _try_parse(text)
            if strict:
                try:
                    _parse_arguments(text, call.name)
                except BackendError as exc:
                    failure = exc  # the step is still closed before the run fails
        await self._emit(StepStopEvent(index=index))
        if failure is not None:
            raise failure

    async def _ensure(self, kind: str) -> None:
        if self._open != kind:
            await self.close()
            await self._start(ModelOutputStep() if kind == "model_output" else ThoughtStep())

    async def _start(self, step: Any) -> None:
        self._open = step.type
        await self._emit(StepStartEvent(index=self._next_index, step=step))
        self._next_index += 1

    async def _delta(self, delta: Any) -> None:
        await self._emit(StepDeltaEvent(index=self._next_index - 1, delta=delta))

    async def _whole_step(self, start: dict[str, Any], delta: dict[str, Any]) -> None:
        await self.close()
        try:
            step, body = _step.validate_python(start), _delta_adapter.validate_python(delta)
        except ValueError as exc:
            raise BackendError(f"malformed {start['type']} step: {exc}") from exc
        await self._start(step)
        await self._delta(body)
        self._open = "tool"
        await self.close()


def _valid_utf8(text: str) -> str:
    """Lone surrogates cannot go on the wire; a decoder that split a character may leave one."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


def _parse_arguments(text: str, name: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackendError(f"the model produced invalid JSON arguments for {name}", "invalid_function_call") from exc
    if not isinstance(value, dict):
        raise BackendError(f"the arguments for {name} are not a JSON object", "invalid_function_call")
    return value


def _try_parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
