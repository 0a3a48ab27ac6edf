"""A generation request → the body of a streaming ``POST /chat/completions``.

History steps become chat messages: user input as ``user`` (text, or content parts: images as ``image_url`` data
URLs, audio as ``input_audio``, video as ``video_url`` and documents as ``file`` parts), model output as
``assistant``, function calls as the ``tool_calls`` of an assistant message (consecutive calls, and the text just
before them, in one message), function results as ``tool`` messages that answer a ``tool_call_id``. Thoughts
are not re-sent: their text lives in the signature, and old reasoning only crowds the context (as llama.cpp's
backend does). Whatever cannot be expressed raises BackendError, which ``prepare`` turns into a 400.
"""

from __future__ import annotations

import json
from typing import Any

from ...schema.content import AudioContent, DocumentContent, ImageContent, TextContent, VideoContent
from ...schema.steps import ModelOutputStep, UserInputStep
from ...schema.tools import FunctionTool
from ..base import BackendError, GenerationRequest
from ..conversation import Call, ModelText, Result, UserTurn, conversation
from .options import OpenAIOptions

_AUDIO_FORMATS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
}
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


def chat_body(request: GenerationRequest, options: OpenAIOptions) -> dict[str, Any]:
    body: dict[str, Any] = dict(options.extra_body)
    body["model"] = options.model or request.model
    body["messages"] = chat_messages(request, options)
    body["stream"] = True
    if options.include_usage:
        body["stream_options"] = {"include_usage": True}
    _tools(request, options, body)
    _generation(request, options, body)
    _response_format(request, options, body)
    _continuation(request, options, body)
    return body


# ---- messages --------------------------------------------------------------------------------------


def chat_messages(request: GenerationRequest, options: OpenAIOptions) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system_instruction:
        messages.append({"role": "system", "content": request.system_instruction})
    for turn in conversation(request.history):
        if isinstance(turn, UserTurn):
            messages.append({"role": "user", "content": _user_content(turn.step, turn.index, options)})
        elif isinstance(turn, ModelText):
            _append_text(messages, turn.text)
        elif isinstance(turn, Call):
            _append_call(messages, turn.id, turn.name, turn.arguments)
        elif isinstance(turn, Result):
            content = f"Error: {turn.text}" if turn.is_error else turn.text
            messages.append({"role": "tool", "tool_call_id": turn.call_id, "content": content})
    return messages


def _append_text(messages: list[dict[str, Any]], text: str) -> None:
    last = messages[-1] if messages else None
    if not text:
        return
    if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
        last["content"] += "\n\n" + text  # one turn's output, split by a thought
    else:
        messages.append({"role": "assistant", "content": text})


def _append_call(messages: list[dict[str, Any]], call_id: str, name: str, arguments: dict[str, Any]) -> None:
    function = {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}
    call = {"id": call_id, "type": "function", "function": function}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        # An empty string, not null: several servers (llama-cpp-python among them) refuse a null content.
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def _text(content: Any) -> str:
    return "".join(block.text for block in content or [] if block.type == "text")


def _user_content(step: UserInputStep, i: int, options: OpenAIOptions) -> str | list[dict[str, Any]]:
    blocks = step.content or []
    if all(isinstance(block, TextContent) for block in blocks):
        return "".join(block.text for block in blocks)  # type: ignore[union-attr]
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if block.type not in options.input_modalities:
            raise _unsupported(block.type, i)
        if isinstance(block, TextContent):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageContent):
            parts.append({"type": "image_url", "image_url": _image(block, i)})
        elif isinstance(block, AudioContent):
            parts.append({"type": "input_audio", "input_audio": _audio(block, i)})
        elif isinstance(block, VideoContent):  # vLLM's (and SGLang's) extension for video models
            parts.append({"type": "video_url", "video_url": {"url": _media_url(block, i)}})
        else:  # a document: OpenAI's file part (PDFs for vision models)
            parts.append({"type": "file", "file": _file(block, i)})
    return parts


def _unsupported(kind: str, i: int) -> BackendError:
    return BackendError(f"{kind} input (history step {i}) is not supported by this model", "invalid_argument")


def _image(block: ImageContent, i: int) -> dict[str, str]:
    image = {"url": _media_url(block, i)}
    detail = _DETAIL.get(block.resolution or "")
    if detail:
        image["detail"] = detail
    return image


# OpenAI's image detail has no level between low and high ("auto" lets the server choose, as for medium).
_DETAIL = {"low": "low", "high": "high", "ultra_high": "high"}


def _media_url(block: ImageContent | VideoContent | DocumentContent, i: int) -> str:
    """A data URL (engine/inputs.py inlines every part before a request is built; a ``uri`` is passed on only
    where that did not run)."""
    if block.data is not None:
        if not block.mime_type:
            raise BackendError(
                f"{block.type} input (history step {i}) needs 'mime_type' with 'data'", "invalid_argument"
            )
        return f"data:{block.mime_type};base64,{block.data}"
    if block.uri:
        return block.uri
    raise BackendError(f"{block.type} input (history step {i}) has neither 'data' nor 'uri'", "invalid_argument")


def _file(block: DocumentContent, i: int) -> dict[str, str]:
    if block.data is None:
        raise BackendError(
            f"document input (history step {i}) must be inline 'data' for this model", "invalid_argument"
        )
    extension = (block.mime_type or "").split(";")[0].rsplit("/", 1)[-1] or "bin"
    return {"filename": f"document.{extension}", "file_data": _media_url(block, i)}


def _audio(block: AudioContent, i: int) -> dict[str, str]:
    fmt = _AUDIO_FORMATS.get(block.mime_type or "")
    if block.data is None or fmt is None:
        raise BackendError(
            f"audio input (history step {i}) must be inline 'data' of type audio/wav or audio/mp3 for this model",
            "invalid_argument",
        )
    return {"data": block.data, "format": fmt}


def _continuation(request: GenerationRequest, options: OpenAIOptions, body: dict[str, Any]) -> None:
    """A round cut off by a crash: its answer so far is the last message, an assistant's, that the upstream
    continues (its thoughts are not re-sent, as in the history)."""
    resume = request.resume
    if resume is None or options.continuation == "none":
        return
    texts = [_text(step.content) for step in resume.steps if isinstance(step, ModelOutputStep)]
    if resume.open_step == "model_output":
        texts.append(resume.prefill)
    text = "\n\n".join(t for t in texts if t)
    if not text:
        return  # nothing written yet: an ordinary request
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if options.continuation == "prefix":
        message["prefix"] = True
    else:
        body["continue_final_message"], body["add_generation_prompt"] = True, False
    body["messages"].append(message)


# ---- tools -----------------------------------------------------------------------------------------


def _tools(request: GenerationRequest, options: OpenAIOptions, body: dict[str, Any]) -> None:
    choice = request.config.tool_choice
    mode: str = "auto"
    functions: list[FunctionTool] = list(request.functions)
    if isinstance(choice, str):
        mode = choice
    elif choice is not None:
        mode = choice.allowed_tools.mode or "auto"
        if choice.allowed_tools.tools is not None:
            allowed = set(choice.allowed_tools.tools)
            functions = [f for f in functions if f.name in allowed]
    if not functions:
        if mode in ("any", "validated"):
            raise BackendError("tool_choice needs at least one allowed function tool", "failed_precondition")
        return
    body["tools"] = [_tool(f) for f in functions]
    if mode == "none":
        body["tool_choice"] = "none"
    elif mode == "any":
        if len(functions) == 1:  # the same as "required", and more widely implemented
            body["tool_choice"] = {"type": "function", "function": {"name": functions[0].name}}
        elif options.supports_required_tool_choice:
            body["tool_choice"] = "required"
        else:
            raise BackendError(
                "tool_choice 'any' with several functions needs tool_choice 'required', which this model's "
                "server does not honour: allow exactly one function with allowed_tools",
                "invalid_argument",
            )
    elif choice is not None:
        body["tool_choice"] = "auto"  # "auto" and "validated": the model answers or calls


def _tool(function: FunctionTool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": function.name, "parameters": function.parameters or _EMPTY_PARAMETERS}
    if function.description or function.short_description:
        spec["description"] = function.description or function.short_description
    return {"type": "function", "function": spec}


# ---- generation settings ---------------------------------------------------------------------------


def _generation(request: GenerationRequest, options: OpenAIOptions, body: dict[str, Any]) -> None:
    config = request.config
    if config.temperature is not None:
        body["temperature"] = config.temperature
    if config.top_p is not None:
        body["top_p"] = config.top_p
    if config.seed is not None:
        body["seed"] = config.seed
    limit = config.max_output_tokens or options.max_output_tokens
    if limit is not None:
        if options.max_tokens_field in ("both", "max_tokens"):
            body["max_tokens"] = limit
        if options.max_tokens_field in ("both", "max_completion_tokens"):
            body["max_completion_tokens"] = limit
    if config.stop_sequences:
        body["stop"] = config.stop_sequences
    if config.thinking_level is not None:
        body["reasoning_effort"] = config.thinking_level


def _response_format(request: GenerationRequest, options: OpenAIOptions, body: dict[str, Any]) -> None:
    fmt = request.response_format
    if fmt is None:
        return
    if fmt.schema_ is not None:
        if options.json_schema_style == "json_object":
            body["response_format"] = {"type": "json_object", "schema": fmt.schema_}
        else:
            schema = {"name": "response", "schema": fmt.schema_}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.mime_type == "application/json":
        body["response_format"] = {"type": "json_object"}
