"""The OpenAPI document, generated from the wire models (served at ``/openapi.json``).

OpenAPI 3.2, for its ``itemSchema``: a ``text/event-stream`` response is described event by event, each with
the JSON schema of its ``data``, so a client (or a fuzzer) can check every frame of a stream.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import TypeAdapter

from .. import __version__
from .errors import HttpErrorBody
from .events import Event
from .interaction import Interaction
from .requests import CreateInteractionRequest

_REF = "#/components/schemas/{model}"


# Members of a tagged union whose tag the server fills in when it is missing (``content._default_text_type``,
# ``generation._default_text_format``, as the SDKs' own types do): the union's default. Every other member
# must carry its tag, which pydantic leaves optional because each model has it as a default.
_TAG_FILLED_IN = frozenset({"TextContent", "TextResponseFormat"})


def _schemas() -> dict[str, Any]:
    named: list[tuple[str, Literal["validation", "serialization"], TypeAdapter[Any]]] = [
        ("CreateInteractionRequest", "validation", TypeAdapter(CreateInteractionRequest)),
        ("Interaction", "serialization", TypeAdapter(Interaction)),
        ("InteractionEvent", "serialization", TypeAdapter(Event)),
        ("Error", "serialization", TypeAdapter(HttpErrorBody)),
    ]
    # In one pass, so that a model whose schema differs between input and output gets two names
    tops, defs = TypeAdapter.json_schemas(named, ref_template=_REF)
    components: dict[str, Any] = defs.get("$defs", {})
    for (name, _), schema in tops.items():
        if schema.get("$ref") != _REF.format(model=name):
            components[name] = schema
    _require_tags(components)
    return components


def _require_tags(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _require_tags(item)
        return
    if not isinstance(node, dict):
        return
    tag = node.get("discriminator", {}).get("propertyName")
    for i, member in enumerate(node.get("oneOf", []) if tag else []):
        if member["$ref"].rsplit("/", 1)[-1] in _TAG_FILLED_IN:
            node["discriminator"]["defaultMapping"] = member["$ref"]  # OpenAPI 3.2: the tag may be left out
        else:
            node["oneOf"][i] = {**member, "required": [tag]}
    for value in node.values():
        _require_tags(value)


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


_ERRORS = {
    str(code): {"description": text, "content": _json("Error")}
    for code, text in [
        (400, "Invalid argument"),
        (401, "No API key"),
        (403, "Wrong API key"),
        (404, "Not found"),
        (413, "Body over the limit"),
    ]
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "example": "v1beta"}}


def _op(summary: str, ok: dict[str, Any], params: list[dict[str, Any]], body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": {"200": ok, **_ERRORS}}
    if body:
        op["requestBody"] = {"required": True, "content": _json("CreateInteractionRequest")}
    return op


def _event_stream(schemas: dict[str, Any]) -> dict[str, Any]:
    """Each frame is ``event: <event_type>`` and ``data: <the event as JSON>``; the last one is
    ``event: done`` and ``data: [DONE]``."""
    mapping = schemas["InteractionEvent"]["discriminator"]["mapping"]
    frames = [
        {
            "properties": {
                "event": {"const": event_type},
                "data": {"contentMediaType": "application/json", "contentSchema": {"$ref": ref}},
            },
            "required": ["event"],
        }
        for event_type, ref in mapping.items()
    ]
    frames.append({"properties": {"event": {"const": "done"}, "data": {"const": "[DONE]"}}, "required": ["event"]})
    item = {
        "type": "object",
        "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
        "required": ["data"],
        "oneOf": frames,
    }
    return {"itemSchema": item}


@cache
def openapi_document() -> dict[str, Any]:
    schemas = _schemas()
    interaction_or_stream = {
        "description": "The Interaction, or with stream=true a text/event-stream of InteractionEvent frames "
        "ending with 'data: [DONE]'",
        "content": {**_json("Interaction"), "text/event-stream": _event_stream(schemas)},
    }
    query = [
        {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
        {"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
        {"name": "include_input", "in": "query", "schema": {"type": "boolean"}},
    ]
    paths = {
        "/{version}/interactions": {
            "post": _op("Create an interaction", interaction_or_stream, [_VERSION], body=True),
        },
        "/{version}/interactions/{id}": {
            "get": _op(
                "Get an interaction, or replay and follow its events", interaction_or_stream, [_VERSION, _ID, *query]
            ),
            "delete": _op("Delete an interaction", {"description": "Deleted"}, [_VERSION, _ID]),
        },
        "/{version}/interactions/{id}/cancel": {
            "post": _op(
                "Cancel a running interaction",
                {"description": "The cancelled Interaction", "content": _json("Interaction")},
                [_VERSION, _ID],
            ),
        },
    }
    paths["/{version}/models"] = {
        "get": _op("The served models (Gemini model resources)", {"description": "{models: [...]}"}, [_VERSION]),
    }
    paths["/{version}/models/{model}"] = {
        "get": _op(
            "One served model",
            {"description": "A model resource"},
            [_VERSION, {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
        ),
    }
    paths["/healthz"] = {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}}
    return {
        "openapi": "3.2.0",
        "info": {"title": "OpenInteractions", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"}},
        },
        "security": [{"apiKey": []}],
    }
