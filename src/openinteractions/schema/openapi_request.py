"""The create request as this server accepts it, for the OpenAPI document.

The wire models take every field the SDKs send, so that what this server does not implement gets a 400 that
names it (``engine/validate.py``). The document says what is accepted: the fields no configuration of this
server implements are left out (an unknown field, a 400 too), and the rules that hold whatever the model and
configuration are written in. What depends on them (the model's generation_config fields and modalities,
structured output, the server tools this server can run) or on stored state (the chain, signatures, call
ids) is not.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .content import Content
from .requests import Turn
from .steps import Step

_REF = "#/components/schemas/{model}"

# Every shape ``normalize_input`` takes: a string, one content, step or turn, or a non-empty list of one kind.
InteractionInput = (
    str
    | Content
    | Step
    | Turn
    | Annotated[list[Content], Field(min_length=1)]
    | Annotated[list[Step], Field(min_length=1)]
    | Annotated[list[Turn], Field(min_length=1)]
)

_NEVER_FIELDS = ("cached_content", "continuation_token", "environment")
# What an agent request may not carry besides ``agent`` (engine/agents.py): its program picks its model, output
# and tools.
_NOT_WITH_AGENT = ("model", "generation_config", "tools", "response_format", "response_mime_type")
_DEEP_RESEARCH_CONFIG = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "deep-research"},
        "thinking_summaries": {"enum": ["auto", "none"]},
        "visualization": {"enum": ["off", "auto"]},
        "collaborative_planning": {"type": "boolean"},
        "enable_bigquery_tool": {"const": False},
    },
}
_NEVER_TOOLS = (
    "GoogleMapsTool",
    "ComputerUseTool",
    "RetrievalTool",
    "ToolSearchTool",
)
_NEVER_CONFIG = ("video_config", "transcription_config")
_OUTPUTS = ("text", "image", "audio")  # what a model of this server can be configured to produce
# What the image backends draw (backends/images/sizing.py) and how audio is spoken (engine/speaking.py).
_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:8", "8:1", "1:4", "4:1")
_IMAGE_SIZES = ("512", "1K", "2K", "4K")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
_SPEAKER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {name: {"type": "string", "minLength": 1} for name in ("voice", "language", "speaker")},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _null(names: tuple[str, ...]) -> dict[str, Any]:
    """Properties that may be there only as null."""
    return {name: {"type": "null"} for name in names}


def _set(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The field is there and not null (not null: non-empty too, with ``schema``)."""
    return {"required": [name], "properties": {name: schema or {"not": {"type": "null"}}}}


def narrow_request(schemas: dict[str, Any]) -> None:
    request = schemas["CreateInteractionRequest"]
    request["description"] = (
        "A model interaction ('model') or an agent's ('agent': the Deep Research names and those configured)."
    )
    fields = request["properties"]
    for name in _NEVER_FIELDS:
        del fields[name]
    fields["model"] = _nullable({"type": "string", "minLength": 1})
    fields["agent"] = _nullable({"type": "string", "minLength": 1})
    fields["agent_config"] = _nullable(_DEEP_RESEARCH_CONFIG)
    fields["input"] = _nullable(_ref("InteractionInput"))
    fields["service_tier"] = _nullable({"const": "standard"})
    fields["response_modalities"] = _nullable({"type": "array", "items": {"enum": list(_OUTPUTS)}, "maxItems": 8})
    fields["response_mime_type"] = _nullable({"enum": ["text/plain", "application/json"]})
    one = _without_video(fields["response_format"]["anyOf"][0])  # at most one of each type: a 400 otherwise
    fields["response_format"] = {"anyOf": [one, {"type": "array", "items": one, "maxItems": 3}, {"type": "null"}]}
    request.pop("required", None)
    request["anyOf"] = [_set("input"), _set("previous_interaction_id")]
    one_format = {"anyOf": [{"type": "object"}, {"type": "array", "minItems": 1}]}
    agent = _set("agent")
    # An agent runs in the background, with its program's model, output and tools.
    only_in_background = {"background": {"const": True}, **_null(_NOT_WITH_AGENT)}
    agent_request = {"required": ["background"], "properties": only_in_background}
    request["allOf"] = [
        {"oneOf": [_set("model"), agent]},
        {"anyOf": [{"not": agent}, agent_request]},
        {"anyOf": [{"not": _set("agent_config")}, agent]},  # agent_config belongs to an agent
        {"not": {**_set("background", {"const": True}), **_set("store", {"const": False})}},
        {"not": {"required": ["response_format", "response_mime_type"], "properties": {
            "response_format": one_format, "response_mime_type": {"type": "string"}}}},
        # image_config goes with image output, which is not drawn with JSON text. (speech_config goes with audio
        # output too, but with both rules schemathesis cannot generate a request: it is a 400 the fuzzer meets.)
        {"anyOf": [{"not": _in_config("image_config")}, _asks_for("image")]},
        {"not": {"allOf": [_asks_for("image"), _json_text()]}},
    ]  # fmt: skip
    _narrow_tools(fields["tools"])
    config = schemas["GenerationConfig"]["properties"]
    for name in _NEVER_CONFIG:
        del config[name]
    config["image_config"] = _nullable({
        "type": "object",
        "additionalProperties": False,
        "properties": {"aspect_ratio": _nullable({"enum": list(_ASPECT_RATIOS)}),
                       "image_size": _nullable({"enum": list(_IMAGE_SIZES)})},
    })  # fmt: skip
    one_speaker = {"type": "array", "items": _SPEAKER, "maxItems": 1}
    speakers = {"type": "object", "required": ["speakers"], "additionalProperties": False,
                "properties": {"speakers": one_speaker}}  # fmt: skip
    config["speech_config"] = _nullable({"anyOf": [_SPEAKER, speakers, one_speaker]})
    _narrow_formats(schemas)
    schemas["SafetySetting"]["properties"]["threshold"] = {"enum": ["block_none", "off"]}  # no safety classifier


def _without_video(union: dict[str, Any]) -> dict[str, Any]:
    video = _REF.format(model="VideoResponseFormat")
    mapping = {k: v for k, v in union["discriminator"]["mapping"].items() if v != video}
    members = [member for member in union["oneOf"] if member["$ref"] != video]
    return {**union, "discriminator": {**union["discriminator"], "mapping": mapping}, "oneOf": members}


def _narrow_formats(schemas: dict[str, Any]) -> None:
    image = schemas["ImageResponseFormat"]["properties"]
    image["mime_type"] = _nullable({"enum": list(_IMAGE_TYPES)})
    image["aspect_ratio"] = _nullable({"enum": list(_ASPECT_RATIOS)})
    image["image_size"] = _nullable({"enum": list(_IMAGE_SIZES)})
    audio = schemas["AudioResponseFormat"]["properties"]
    audio["sample_rate"] = _nullable({"type": "integer", "minimum": 8000, "maximum": 48000})
    audio["bit_rate"] = {"type": "null"}  # PCM and WAV have none to choose
    for fields in (image, audio):
        fields["delivery"] = _nullable({"const": "inline"})


def _asks_for(output: str) -> dict[str, Any]:
    """The request asks for this output: in response_modalities, or as a response_format of its type."""
    fmt = {"type": "object", "required": ["type"], "properties": {"type": {"const": output}}}
    return {"anyOf": [
        {"required": ["response_modalities"],
         "properties": {"response_modalities": {"type": "array", "contains": {"const": output}}}},
        {"required": ["response_format"],
         "properties": {"response_format": {"anyOf": [fmt, {"type": "array", "contains": fmt}]}}},
    ]}  # fmt: skip


def _in_config(name: str) -> dict[str, Any]:
    return {"required": ["generation_config"], "properties": {"generation_config": {"type": "object", **_set(name)}}}


def _json_text() -> dict[str, Any]:
    """Structured output asked for: JSON text, by response_mime_type or a text response_format."""
    text = {"properties": {"type": {"const": "text"}}}
    json_format = {"type": "object", **text, "anyOf": [_set("mime_type", {"const": "application/json"}),
                                                       _set("schema", {"type": "object"})]}  # fmt: skip
    return {"anyOf": [
        _set("response_mime_type", {"const": "application/json"}),
        {"required": ["response_format"],
         "properties": {"response_format": {"anyOf": [json_format, {"type": "array", "contains": json_format}]}}},
    ]}  # fmt: skip


def _narrow_tools(tools: dict[str, Any]) -> None:
    union = tools["anyOf"][0]["items"]
    refs = {_REF.format(model=name) for name in _NEVER_TOOLS}
    union["oneOf"] = [member for member in union["oneOf"] if member["$ref"] not in refs]
    union["discriminator"]["mapping"] = {k: v for k, v in union["discriminator"]["mapping"].items() if v not in refs}
    for member in union["oneOf"]:
        if member["$ref"] == _REF.format(model="FileSearchTool"):
            member["required"] = [*member["required"], "file_search_store_names"]
            member["properties"] = {
                "file_search_store_names": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": "^fileSearchStores/"},
                },
                "top_k": _nullable({"type": "integer", "minimum": 1, "maximum": 100}),
            }
        if member["$ref"] == _REF.format(model="FunctionTool"):
            member["required"] = [*member["required"], "name"]
            member["properties"] = {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"},
                "parameters": _nullable({"type": "object", "properties": {"type": {"const": "object"}}}),
                "defer_loading": _nullable({"const": False}),
            }
