"""Conversations as prompts: the GGUF's own chat template renders the messages that the history becomes.

Models whose template knows no tools (SmolLM2 among them) are told about functions in the system message and
answer calls as a JSON array (see calls.py); a call appears in later turns as that same JSON from the
assistant, and a result as a user message that names the function. Thoughts of earlier steps are not
re-rendered: their text lives in the signature, and feeding old reasoning back only crowds the context.

For a model with a multimodal projector, each image of a user turn is rendered as a marker that names it
(``image_marker``); the backend splits the rendered prompt there and puts the image's pieces in (vision.py). The
markers carry a random nonce, so that no text a user sends can stand for an image.
"""

from __future__ import annotations

import json
import re
import secrets

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ...schema.content import ImageContent
from ...schema.steps import FunctionResultStep, Step, UserInputStep
from ...schema.tools import FunctionTool
from ..base import BackendError
from ..conversation import Call, ModelText, Result, Turn, UserTurn, conversation

_NONCE = secrets.token_hex(8)
IMAGE_MARKERS = re.compile(f"<__image_{_NONCE}_([0-9]+)__>")


def image_marker(index: int) -> str:
    return f"<__image_{_NONCE}_{index}__>"


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


def _user_text(step: UserInputStep, images: list[ImageContent] | None) -> str:
    """The model reads text, and images where it has a projector (``images`` collects them, in the order of
    their markers): a document or recording reaches it as text (engine/inputs.py); any other part is refused
    rather than dropped unseen."""
    parts = []
    for block in step.content or []:
        if block.type == "text":
            parts.append(block.text)
        elif isinstance(block, ImageContent) and images is not None:
            parts.append(image_marker(len(images)))
            images.append(block)
        else:
            reads = "text only" if images is None else "text and images only"
            message = f"{block.type} input cannot be given to this model: it reads {reads}"
            raise BackendError(message, "invalid_argument")
    return "".join(parts)


def _message(turn: Turn, images: list[ImageContent] | None) -> tuple[str, str]:
    """(role, text) for one turn of the conversation."""
    if isinstance(turn, UserTurn):
        return "user", _user_text(turn.step, images)
    if isinstance(turn, ModelText):
        return "assistant", turn.text
    if isinstance(turn, Call):
        return "assistant", json.dumps([{"name": turn.name, "arguments": turn.arguments}], ensure_ascii=False)
    assert isinstance(turn, Result)
    return "user", turn.heading + turn.text


def chat_messages(
    history: list[Step], system: list[str], images: list[ImageContent] | None = None
) -> list[dict[str, str]]:
    """The history as chat messages; ``images``: a list to collect the images in, for a model that reads them."""
    if images is not None:
        _no_images_in_results(history)
    messages: list[dict[str, str]] = []
    system_text = "\n\n".join(part for part in system if part)
    if system_text:
        messages.append({"role": "system", "content": system_text})
    for turn in conversation(history):
        role, text = _message(turn, images)
        if messages and messages[-1]["role"] == role and role != "system":
            messages[-1]["content"] = _merge(messages[-1]["content"], text)
        else:
            messages.append({"role": role, "content": text})
    return messages


def _no_images_in_results(history: list[Step]) -> None:
    """A function result's image would otherwise reach the model as the JSON of its base64 data."""
    for i, step in enumerate(history):
        items = step.result if isinstance(step, FunctionResultStep) and isinstance(step.result, list) else []
        if any(isinstance(item, dict) and item.get("type") == "image" for item in items):
            message = f"history step {i}: this model reads images in user input only, not in a function result"
            raise BackendError(message, "invalid_argument")


def _merge(earlier: str, later: str) -> str:
    """Consecutive calls become one array, as the model would have written them."""
    if earlier.startswith("[{") and later.startswith("[{"):
        return json.dumps(json.loads(earlier) + json.loads(later), ensure_ascii=False)
    return f"{earlier}\n\n{later}"
