"""Conversations as prompts: the GGUF's own chat template renders the messages that the history becomes.

Models whose template knows no tools (SmolLM2 among them) are told about functions in the system message and
answer calls as a JSON array (see calls.py); a call appears in later turns as that same JSON from the
assistant, and a result as a user message that names the function. Thoughts of earlier steps are not
re-rendered: their text lives in the signature, and feeding old reasoning back only crowds the context.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ...schema.steps import (
    CodeExecutionCallStep,
    CodeExecutionResultStep,
    FileSearchCallStep,
    FileSearchResultStep,
    FunctionCallStep,
    FunctionResultStep,
    GoogleSearchCallStep,
    GoogleSearchResultStep,
    McpServerToolCallStep,
    McpServerToolResultStep,
    ModelOutputStep,
    Step,
    ThoughtStep,
    UrlContextCallStep,
    UrlContextResultStep,
    UserInputStep,
)
from ...schema.tools import FunctionTool
from ..base import BackendError
from ..tool_text import mcp_call_function, mcp_result_text, server_result_text

# Used when a GGUF carries no chat template.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatFormat:
    def __init__(self, template: str | None, bos: str, eos: str) -> None:
        self.template = template or CHATML
        self._formatter = Jinja2ChatFormatter(self.template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        self.native_thinking = "<think>" in self.template

    def render(self, messages: list[dict[str, str]]) -> str:
        try:
            return str(self._formatter(messages=messages).prompt)  # type: ignore[arg-type]  # dicts of its shape
        except Exception as exc:  # templates raise on role orders they do not accept
            message = f"the model's chat template rejected the conversation: {exc}"
            raise BackendError(message, "invalid_argument") from exc


def tool_instructions(functions: list[FunctionTool], must_call: bool) -> str:
    lines = ["You can call these functions. Each is given as its name, description and JSON schema of arguments:"]
    for f in functions:
        description = f.description or f.short_description or ""
        lines.append(json.dumps({"name": f.name, "description": description, "parameters": f.parameters or {}}))
    example = json.dumps([{"name": functions[0].name, "arguments": {}}])
    lines.append(f"To call functions, reply with only a JSON array of calls, like {example}.")
    lines.append("You must call a function now." if must_call else "If no function is needed, answer normally.")
    return "\n".join(lines)


def _text(content: Any) -> str:
    return "".join(block.text for block in content or [] if block.type == "text")


def _user_text(step: UserInputStep) -> str:
    """The model reads text only: a document or recording reaches it as text (engine/inputs.py); any other part
    is refused rather than dropped unseen."""
    for block in step.content or []:
        if block.type != "text":
            raise BackendError(
                f"{block.type} input cannot be given to this model: it reads text only", "invalid_argument"
            )
    return _text(step.content)


def _as_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _message(step: Step) -> tuple[str, str] | None:
    """(role, text) for one history step; None for a thought (see above); a step it cannot carry is a 400."""
    if isinstance(step, UserInputStep):
        return "user", _user_text(step)
    if isinstance(step, ModelOutputStep):
        return "assistant", _text(step.content)
    if isinstance(step, FunctionCallStep):
        return "assistant", json.dumps([{"name": step.name, "arguments": step.arguments}], ensure_ascii=False)
    if isinstance(step, FunctionResultStep):
        outcome = "failed with" if step.is_error else "returned"
        return "user", f"Function {step.name or step.call_id} {outcome}: {_as_json(step.result)}"
    if isinstance(step, GoogleSearchCallStep | UrlContextCallStep | CodeExecutionCallStep):
        arguments = step.arguments.model_dump(exclude_none=True, exclude={"language"})
        return "assistant", json.dumps([{"name": step.type.removesuffix("_call"), "arguments": arguments}])
    if isinstance(step, FileSearchCallStep):  # the spec's call step keeps no arguments
        return "assistant", json.dumps([{"name": "file_search", "arguments": {}}])
    if isinstance(step, GoogleSearchResultStep | UrlContextResultStep | CodeExecutionResultStep | FileSearchResultStep):
        return "user", f"{step.type.removesuffix('_result')} returned:\n{server_result_text(step)}"
    if isinstance(step, McpServerToolCallStep):
        return "assistant", json.dumps([{"name": mcp_call_function(step), "arguments": step.arguments}])
    if isinstance(step, McpServerToolResultStep):
        outcome = "failed with" if step.is_error else "returned"
        return "user", f"The MCP tool {outcome}:\n{mcp_result_text(step)}"
    if isinstance(step, ThoughtStep):
        return None
    raise BackendError(f"a {step.type} step cannot be sent to this model", "invalid_argument")


def chat_messages(history: list[Step], system: list[str]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    system_text = "\n\n".join(part for part in system if part)
    if system_text:
        messages.append({"role": "system", "content": system_text})
    for step in history:
        rendered = _message(step)
        if rendered is None:
            continue
        role, text = rendered
        if messages and messages[-1]["role"] == role and role != "system":
            messages[-1]["content"] = _merge(messages[-1]["content"], text)
        else:
            messages.append({"role": role, "content": text})
    return messages


def _merge(earlier: str, later: str) -> str:
    """Consecutive calls become one array, as the model would have written them."""
    if earlier.startswith("[{") and later.startswith("[{"):
        return json.dumps(json.loads(earlier) + json.loads(later), ensure_ascii=False)
    return f"{earlier}\n\n{later}"
