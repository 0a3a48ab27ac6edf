"""Where a run stands, read back from its durable event log: what a run taken over after a crash goes on from.

Finished steps (tool calls and results included) are kept as they are. The tool loop's round is counted from
the log: a round ends with the server-tool steps it called, so the number of such groups is the round the log
stops in (a group at the very start, when the prompt's URLs were read first, is not a round's). The step the
crash cut off is the step started and not stopped; its text so far is what a backend with ``continuation``
is given as the start of its answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from ..backends.base import Resume
from ..schema.events import Event
from ..schema.steps import FunctionCallStep, Step
from ..tools.registry import SERVER_TOOLS
from .assembler import Assembler

_event: TypeAdapter[Any] = TypeAdapter(Event)
_step: TypeAdapter[Any] = TypeAdapter(Step)


@dataclass
class LogState:
    events: int = 0
    ended: bool = False  # its terminal event is logged: only the stored result is missing
    types: list[str] = field(default_factory=list)  # each step's type, by index
    open_index: int | None = None  # the step the crash cut off
    function_calls: list[FunctionCallStep] = field(default_factory=list)


def fold_frame(frame: bytes, assembler: Assembler) -> Any:
    """Fold one SSE frame of a log into ``assembler``; its event."""
    event = _event.validate_json(frame.split(b"\ndata: ", 1)[1])
    assembler.apply(event)
    return event


def read_log(frames: list[bytes], assembler: Assembler) -> LogState:
    """Fold ``frames`` into ``assembler``; where the run stands."""
    state = LogState(events=len(frames))
    for frame in frames:
        event = fold_frame(frame, assembler)
        kind = event.event_type
        if kind == "step.start":
            state.types.append(event.step.type)
            state.open_index = event.index
        elif kind == "step.stop":
            state.open_index = None
        elif kind in ("interaction.completed", "error"):
            state.ended = True
    return state


def _is_tool(step_type: str) -> bool:
    return SERVER_TOOLS.of_step(step_type) is not None


def round_start(types: list[str], pre_read: bool) -> tuple[int, int]:
    """(the round the log stops in, the index of that round's first step)."""
    rounds = start = i = 0
    while i < len(types):
        if not _is_tool(types[i]):
            i += 1
            continue
        j = i
        while j < len(types) and _is_tool(types[j]):
            j += 1
        if not (pre_read and i == 0):
            rounds += 1
        start = i = j
    return rounds, start


def unanswered_call(types: list[str]) -> bool:
    """The log stops between a server tool's call and its result: the tool was running."""
    return bool(types) and _is_tool(types[-1]) and types[-1].endswith("_call")


def built_steps(assembler: Assembler) -> list[dict[str, Any] | None]:
    """Each step as folded so far, by index (None: a function call cut off in its arguments)."""
    return [draft.build() for draft in assembler.drafts]


def resume_point(steps: list[dict[str, Any] | None], state: LogState, start: int) -> Resume:
    """The completed steps of the cut-off round, and the open step's text."""
    end = state.open_index if state.open_index is not None else len(steps)
    done = [_step.validate_python(s) for s in steps[start:end] if s is not None]
    open_kind = state.types[end] if state.open_index is not None else None
    prefill = ""
    if open_kind is not None:
        step = steps[end] or {}
        blocks = step.get("content" if open_kind == "model_output" else "summary") or []
        prefill = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    return Resume(steps=done, open_step=open_kind, prefill=prefill)


def function_calls(steps: list[dict[str, Any] | None]) -> list[FunctionCallStep]:
    return [FunctionCallStep.model_validate(s) for s in steps if s is not None and s.get("type") == "function_call"]
