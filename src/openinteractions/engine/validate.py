"""Every request field is implemented or rejected here with a 400 that names it; none is silently ignored."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal, cast

from ..backends.base import Capabilities
from ..errors import failed_precondition, invalid_argument, not_supported
from ..schema.generation import (
    AudioResponseFormat,
    GenerationConfig,
    ImageResponseFormat,
    TextResponseFormat,
    ToolChoiceConfig,
)
from ..schema.requests import CONTENT_TYPES, CreateInteractionRequest
from ..schema.steps import FunctionResultStep, Step, UserInputStep
from ..schema.tools import FunctionTool
from ..tools.kind import ServerToolKind
from ..tools.registry import SERVER_TOOLS
from .agents import check_agent_shape
from .inputs import READ_AS_TEXT, serving_hint

_HONOURED_THRESHOLDS = frozenset({"block_none", "off"})
_MEDIA = CONTENT_TYPES - {"text"}
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
ToolProblem = Callable[[str], str | None]


def check_request_shape(req: CreateInteractionRequest) -> None:
    """Checks that need no model: the variant, and the fields no configuration of this server implements."""
    if req.model is not None and req.agent is not None:
        raise invalid_argument("'model' and 'agent' are mutually exclusive: set exactly one of them")
    if req.agent is not None or req.agent_config is not None:
        check_agent_shape(req)
    elif not req.model:
        raise invalid_argument("'model' is required")
    if req.background and req.store is False:
        raise invalid_argument("'background' needs 'store': a background run is followed and fetched by its id")
    if req.cached_content is not None:
        raise not_supported("'cached_content'")
    if req.continuation_token is not None:
        raise invalid_argument("'continuation_token' is unknown: this server never issues continuation tokens")
    if req.environment is not None:
        raise not_supported("'environment'")
    if req.service_tier not in (None, "standard"):
        raise not_supported(f"'service_tier' {req.service_tier!r}", "not offered by this server (only 'standard')")
    for modality in req.response_modalities or []:
        if modality not in ("text", "audio", "image"):
            raise not_supported(f"'response_modalities' {modality!r}")
    for i, setting in enumerate(req.safety_settings or []):
        if setting.threshold not in _HONOURED_THRESHOLDS:
            raise invalid_argument(
                f"'safety_settings[{i}].threshold' {setting.threshold!r} cannot be honoured: this server runs no "
                "safety classifier, so only 'block_none' and 'off' are accepted"
            )


def text_response_format(req: CreateInteractionRequest) -> TextResponseFormat | None:
    """The text format the model must produce, from ``response_format`` or the older ``response_mime_type``."""
    formats = req.response_format if isinstance(req.response_format, list) else [req.response_format]
    text_formats: list[TextResponseFormat] = []
    for fmt in formats:
        if fmt is None or isinstance(fmt, AudioResponseFormat | ImageResponseFormat):  # audio_output's, image's
            continue
        if not isinstance(fmt, TextResponseFormat):
            raise not_supported(f"'response_format' of type {fmt.type!r} ({fmt.type} output)")
        text_formats.append(fmt)
    if len(text_formats) > 1:
        raise invalid_argument("'response_format' lists more than one text format")
    mime_type = req.response_mime_type
    if mime_type is not None:
        if mime_type not in ("text/plain", "application/json"):
            raise invalid_argument(f"'response_mime_type' {mime_type!r} is not supported")
        mime_type = cast(Literal["text/plain", "application/json"], mime_type)
        if text_formats:
            raise invalid_argument("set 'response_format' or 'response_mime_type', not both")
        text_formats.append(TextResponseFormat(mime_type=mime_type))
    return text_formats[0] if text_formats else None


def image_response_format(req: CreateInteractionRequest) -> ImageResponseFormat | None:
    """The image output asked for: an image ``response_format``, or ``"image"`` in ``response_modalities``."""
    formats = req.response_format if isinstance(req.response_format, list) else [req.response_format]
    images = [fmt for fmt in formats if isinstance(fmt, ImageResponseFormat)]
    if len(images) > 1:
        raise invalid_argument("'response_format' lists more than one image format")
    if images:
        return images[0]
    return ImageResponseFormat() if "image" in (req.response_modalities or []) else None


def _check_image_output(req: CreateInteractionRequest, caps: Capabilities, model: str) -> None:
    image = image_response_format(req)
    if image is not None and "image" not in caps.output_modalities:
        raise failed_precondition(
            f"image output ('response_format' of type 'image') needs an image backend, and model {model!r} has none: "
            'configure one as [images.<name>] (backend = "diffusers" with a pipeline folder as path, or backend = '
            '"openai" with the base_url of an OpenAI-compatible images API) and serve a model that pairs it with a '
            'text model: [models.<name>] with backend = "interleaved", text = "<a served model>", images = '
            '"<the [images] name>" (see docs/backends.md)'
        )
    config = req.generation_config
    if image is None and config is not None and config.image_config is not None:
        raise invalid_argument(
            "'generation_config.image_config' needs image output: add {\"type\": \"image\"} to 'response_format'"
        )
    fmt = text_response_format(req)
    if image is not None and fmt is not None and (fmt.mime_type == "application/json" or fmt.schema_ is not None):
        raise not_supported("structured output ('response_format' with JSON) together with image output")


def check_capabilities(
    req: CreateInteractionRequest, caps: Capabilities, model: str, inputs: list[Step], tool_problem: ToolProblem
) -> None:
    """Checks against what the chosen backend implements, and what server tools this server can run."""
    _check_generation_config(req.generation_config, caps, model, asks_for_audio(req))
    functions, kinds = _check_tools(req, caps, model, tool_problem)
    _check_tool_choice(req.generation_config, functions, [kind for kind in kinds if kind.declared_later])
    _check_image_output(req, caps, model)
    fmt = text_response_format(req)
    wants_json = fmt is not None and (fmt.mime_type == "application/json" or fmt.schema_ is not None)
    if wants_json and not caps.structured_output:
        raise not_supported("structured output ('response_format' with JSON)", f"not supported by model {model!r}")
    for i, step in enumerate(inputs):
        for where, kind, as_text in _block_types(step):
            if kind not in caps.input_modalities and not as_text:
                takes = ", ".join(sorted(caps.input_modalities))
                raise not_supported(
                    f"{kind} input (input step {i}{where})",
                    f"not supported by model {model!r} (it takes {takes}): {serving_hint(kind)}",
                )


def _block_types(step: Step) -> Iterator[tuple[str, str, bool]]:
    """The content types a step gives the model (its content, a function result's items; a thought's summary
    is not given to the model), each with its place in the step, and whether a model without that modality can
    be given it as text (engine/inputs.py reads a user's documents and audio for it)."""
    user = isinstance(step, UserInputStep)
    for j, block in enumerate(getattr(step, "content", None) or []):
        yield f", content {j}", block.type, user and block.type in READ_AS_TEXT
    if isinstance(step, FunctionResultStep) and isinstance(step.result, list):
        for item in step.result:
            if isinstance(item, dict) and item.get("type") in _MEDIA:
                yield "", item["type"], False


def asks_for_audio(req: CreateInteractionRequest) -> bool:
    """Audio output (engine/speaking.py): ``response_modalities`` or a ``response_format`` of type audio."""
    formats = req.response_format if isinstance(req.response_format, list) else [req.response_format]
    return "audio" in (req.response_modalities or []) or any(isinstance(f, AudioResponseFormat) for f in formats)


def _check_generation_config(config: GenerationConfig | None, caps: Capabilities, model: str, audio: bool) -> None:
    if config is None:
        return
    if config.speech_config is not None and not audio:
        raise invalid_argument("'generation_config.speech_config' needs audio output: response_modalities "
                               "['audio'] or a response_format of type 'audio'")  # fmt: skip
    for name in config.model_fields_set - {"speech_config"}:  # spoken by the server, not the model
        if getattr(config, name) is not None and name not in caps.generation_config:
            raise not_supported(f"'generation_config.{name}'", f"not supported by model {model!r}")


def _check_tools(
    req: CreateInteractionRequest, caps: Capabilities, model: str, tool_problem: ToolProblem
) -> tuple[list[FunctionTool], list[ServerToolKind]]:
    """The request's client functions, and the kinds of its server tools (tools/registry.py)."""
    functions: list[FunctionTool] = []
    seen: set[str] = set()
    server: set[str] = set()
    kinds: list[ServerToolKind] = []
    for i, tool in enumerate(req.tools or []):
        kind = SERVER_TOOLS.get(tool.type)
        if isinstance(tool, FunctionTool):
            functions.append(_check_function(tool, i, seen))
        elif kind is not None:
            problem = tool_problem(kind.type)
            if problem is not None:
                raise not_supported(f"the {tool.type!r} tool (tools[{i}])", f"unavailable on this server: {problem}")
            server.add(kind.check(tool, i, server))
            kinds.append(kind)
        else:
            raise not_supported(f"the {tool.type!r} tool (tools[{i}])")
    if (functions or server) and not caps.function_calling:
        raise not_supported("tool calling", f"not supported by model {model!r}")
    for function in functions:
        clash = next(filter(None, (kind.name_clash(str(function.name)) for kind in kinds)), None)
        if clash is not None:
            raise invalid_argument(clash)
    return functions, kinds


def _check_function(tool: FunctionTool, i: int, seen: set[str]) -> FunctionTool:
    if not tool.name:
        raise invalid_argument(f"'tools[{i}].name' is required for a function tool")
    if not _FUNCTION_NAME.fullmatch(tool.name):  # ASCII: str.isalnum() would pass 'café', which upstreams refuse
        raise invalid_argument(f"'tools[{i}].name' {tool.name!r} must be 1-128 letters, digits, '_', '-' or '.'")
    if tool.name in seen:
        raise invalid_argument(f"'tools[{i}].name' {tool.name!r} is declared twice")
    seen.add(tool.name)
    params = tool.parameters
    if params is not None and params.get("type", "object") != "object":
        raise invalid_argument(f"'tools[{i}].parameters' must be a JSON schema of type 'object'")
    if tool.defer_loading:
        raise not_supported(f"'tools[{i}].defer_loading'")
    return tool


def _check_tool_choice(
    config: GenerationConfig | None, functions: list[FunctionTool], later: list[ServerToolKind]
) -> None:
    """``later``: the request's server tools whose functions are known once listed (MCP servers': a name in
    their namespace may be chosen)."""
    choice = config.tool_choice if config else None
    if choice is None:
        return
    names = {f.name for f in functions}
    if isinstance(choice, ToolChoiceConfig):
        for name in choice.allowed_tools.tools or []:
            if name not in names and not any(kind.name_clash(name) for kind in later):
                raise invalid_argument(f"'generation_config.tool_choice.allowed_tools' names unknown function {name!r}")
        mode = choice.allowed_tools.mode
    else:
        mode = choice
    if mode in ("any", "validated") and not functions and not later:
        raise failed_precondition(f"'generation_config.tool_choice' {mode!r} needs at least one function tool")
