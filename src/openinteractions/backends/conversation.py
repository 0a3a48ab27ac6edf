"""A history of steps as a conversation any backend renders: user turns, model text, calls and their results.

Every backend that renders prompts walks the history here, so a step kind is enumerated once: a server tool's
call is the function call it was made as, its result the text a model reads of it (each tool's kind says how:
tools/kind.py). Thoughts are left out: their text lives in the signature, and feeding old reasoning back only
crowds the context. A step no model can be given raises ``BackendError``, which ``prepare`` turns into a 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..schema.steps import FunctionCallStep, FunctionResultStep, ModelOutputStep, Step, ThoughtStep, UserInputStep
from ..tools.registry import SERVER_TOOLS
from .base import BackendError


@dataclass(frozen=True)
class UserTurn:
    step: UserInputStep
    index: int  # in the history (errors about its content name it)


@dataclass(frozen=True)
class ModelText:
    text: str


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Result:
    call_id: str
    text: str  # what the model reads of the result
    is_error: bool
    heading: str  # how a prompt that renders results as text introduces it (ending in its separator)


Turn = UserTurn | ModelText | Call | Result


def text_of(content: Any) -> str:
    return "".join(block.text for block in content or [] if block.type == "text")


def function_result_text(result: Any) -> str:
    """A result of text blocks (``{"content": [{"type": "text", ...}]}``, the SDK examples' shape) as its text."""
    if isinstance(result, str):
        return result
    blocks = result.get("content") if isinstance(result, dict) and len(result) == 1 else result
    if isinstance(blocks, list) and blocks and all(is_text_block(b) for b in blocks):
        return "".join(b["text"] for b in blocks)
    return json.dumps(result, ensure_ascii=False)


def is_text_block(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)


def conversation(history: list[Step]) -> Iterator[Turn]:
    for i, step in enumerate(history):
        turn = _turn(step, i)
        if turn is not None:
            yield turn
        elif not isinstance(step, ThoughtStep):
            raise BackendError(f"history step {i} ({step.type}) cannot be sent to this model", "invalid_argument")


def _turn(step: Step, index: int) -> Turn | None:
    if isinstance(step, UserInputStep):
        return UserTurn(step, index)
    if isinstance(step, ModelOutputStep):
        return ModelText(text_of(step.content))
    if isinstance(step, FunctionCallStep):
        return Call(step.id, step.name, step.arguments)
    if isinstance(step, FunctionResultStep):
        outcome = "failed with" if step.is_error else "returned"
        heading = f"Function {step.name or step.call_id} {outcome}: "
        return Result(step.call_id, function_result_text(step.result), bool(step.is_error), heading)
    kind = SERVER_TOOLS.of_step(step.type)
    if kind is None:
        return None
    if step.type.endswith("_call"):
        name, arguments = kind.call_function(step)
        return Call(getattr(step, "id", ""), name, arguments)
    is_error = bool(getattr(step, "is_error", False))
    heading = kind.result_heading(step) + "\n"
    return Result(getattr(step, "call_id", ""), kind.result_text(step), is_error, heading)
