"""The deep-research program's state as a fold of its event log, for a run taken over after a crash.

Each phase's thought seals, after the text its summary shows, a record of what the phase decided (the plan's
questions, the question searched, the documents read, the notes kept, the follow-up questions) in its signature,
which only the server can open. A program taken over goes through its phases again against the logged steps:
a phase whose thought is logged takes its record instead of asking the model; a tool call with its result takes
the result instead of running the tool; a call logged without its result (the tool was running) runs again under
its logged id. What the log does not hold yet runs live. The cut step is not in the past: a thought or a tool
call cut off is closed by the run and done again; a cut report goes on where the backend can continue it.
Thoughts without a record (a cut one, closed on takeover) and calls whose arguments are not the ones the
program makes at that point (a cut one, closed and made again) are skipped.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from ..backends.base import GenerationRequest
from ..schema.steps import ThoughtStep

_STATE = "\n\n[research state] "


class Diverged(Exception):
    """The log does not follow the program's course: it cannot go on from it."""


def sealed(record: dict[str, Any]) -> str:
    """The hidden part of a phase's thought: its record."""
    return _STATE + json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def record_of(text: str) -> dict[str, Any] | None:
    _, found, rest = text.rpartition(_STATE)
    if not found:
        return None
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class Past:
    """The steps a previous server logged, taken in order as the program goes through its phases again."""

    def __init__(self, steps: list[dict[str, Any]], opener: Callable[[ThoughtStep], str]) -> None:
        self._steps: deque[dict[str, Any]] = deque(steps)
        self._open = opener

    def __bool__(self) -> bool:
        self._skip_unrecorded()
        return bool(self._steps)

    def recall(self, phase: str) -> dict[str, Any] | None:
        """The record of ``phase`` if its thought is the next logged step (taken), else None."""
        self._skip_unrecorded()
        if not self._steps or self._steps[0].get("type") != "thought":
            return None
        record = self._record(self._steps[0])
        if record is None or record.get("phase") != phase:
            return None
        self._steps.popleft()
        return record

    def call(self, tool: str, arguments: dict[str, Any]) -> tuple[str, Any] | None:
        """(the call's id, its logged result or None if it was running) if ``tool`` was called so; else None."""
        self._skip_unrecorded()
        while self._steps and self._steps[0].get("type") == f"{tool}_call":
            step = self._steps.popleft()
            if step.get("arguments") != arguments:
                continue  # a call cut off in its arguments, made again after it
            call_id = str(step.get("id", ""))
            if not self._steps:
                return call_id, None  # the tool was running
            result = self._steps[0]
            if result.get("type") == f"{tool}_result" and result.get("call_id") == call_id:
                self._steps.popleft()
                return call_id, result
            if result.get("type") == f"{tool}_call":
                continue  # this one was cut off and made again
            raise Diverged(f"the {tool} call {call_id} is followed by a {result.get('type')} step")
        return None

    def report(self) -> str | None:
        """A report the log holds whole (the crash came after it): its text."""
        self._skip_unrecorded()
        outputs = [s for s in self._steps if s.get("type") == "model_output"]
        if not outputs or len(outputs) != len(self._steps):
            return None
        self._steps.clear()  # an earlier one, cut and closed, was written again after it
        blocks = outputs[-1].get("content") or []
        return "".join(b.get("text", "") for b in blocks if b.get("type") == "text")

    def expect_end(self, what: str) -> None:
        if self:
            raise Diverged(f"the log has a {self._steps[0].get('type')} step where the program {what}")

    def _skip_unrecorded(self) -> None:
        while self._steps and self._steps[0].get("type") == "thought" and self._record(self._steps[0]) is None:
            self._steps.popleft()

    def _record(self, step: dict[str, Any]) -> dict[str, Any] | None:
        return record_of(self._open(ThoughtStep.model_validate(step)))


def pending_plan(generation: GenerationRequest, opener: Callable[[ThoughtStep], str]) -> dict[str, Any] | None:
    """The plan a collaborative-planning turn proposed, if the chain's last turn ended with it (its record:
    the request and the questions); None otherwise."""
    for step in reversed(generation.history[: generation.turn_start]):
        if isinstance(step, ThoughtStep):
            record = record_of(opener(step))
            if record is not None:
                return record if record.get("phase") == "proposal" else None
        elif step.type != "model_output":
            return None
    return None
