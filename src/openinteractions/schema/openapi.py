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
from .openapi_request import InteractionInput, narrow_request
from .requests import CreateInteractionRequest

_REF = "#/components/schemas/{model}"


# Members of a tagged union whose tag the server fills in when it is missing (``content._default_text_type``,
# ``generation._default_text_format``, as the SDKs' own types do): the union's default. Every other member
# must carry its tag, which pydantic leaves optional because each model has it as a default.
_TAG_FILLED_IN = frozenset({"TextContent", "TextResponseFormat"})


def _schemas() -> dict[str, Any]:
    named: list[tuple[str, Literal["validation", "serialization"], TypeAdapter[Any]]] = [
        ("CreateInteractionRequest", "validation", TypeAdapter(CreateInteractionRequest)),
        ("InteractionInput", "validation", TypeAdapter(InteractionInput)),
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
    narrow_request(components)
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


_ERRORS = {
    400: "Invalid argument, or a precondition not met (FAILED_PRECONDITION)",
    401: "No API key (keys are configured)",
    403: "Unknown API key, or a web page of an origin not in server.allowed_origins",
    404: "No such path, version, model or interaction (another key's interactions are not found either)",
    408: "The request's head or body arrived too slowly; the connection is closed",
    413: "Body over server.max_request_bytes",
    415: "A POST body in a type a web page can send without a preflight (text/plain, form types)",
    421: "A Host this server does not answer for (server.allowed_hosts)",
    429: "Over this key's create rate or concurrent runs (Retry-After, retry-after-ms)",
    431: "Request head over server.max_header_bytes or server.max_header_count; the connection is closed",
    503: "The server is shutting down",
}
# What the HTTP edge (api/guard.py, api/protocol.py) may answer to any request, before routing.
_EDGE = (408, 421, 431)
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^v[0-9]+((alpha|beta)[0-9]*)?$", "example": "v1beta"},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_BY_ID = {"path.version": "$request.path.version", "path.id": "$response.body#/id"}
# Where an Interaction leads: a client (or a fuzzer, building sequences of calls) follows these by its id.
_LINKS: dict[str, dict[str, Any]] = {
    "get": {"operationId": "getInteraction", "parameters": _BY_ID},
    "stream": {"operationId": "getInteraction", "parameters": {**_BY_ID, "query.stream": "true"}},
    "cancel": {"operationId": "cancelInteraction", "parameters": _BY_ID},
    "delete": {"operationId": "deleteInteraction", "parameters": _BY_ID},
    "continue": {
        "operationId": "createInteraction",
        "parameters": {"path.version": "$request.path.version"},
        "requestBody": {"model": "$response.body#/model", "previous_interaction_id": "$response.body#/id"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(codes: tuple[int, ...]) -> dict[str, Any]:
    """The error answers for ``codes``, with those of the HTTP edge that any request may get."""
    return {
        str(code): {"description": _ERRORS[code], "content": _json(_ref("Error"))}
        for code in sorted(set(codes + _EDGE))
    }


def _op(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    params: list[dict[str, Any]],
    errors: tuple[int, ...] = (400, 401, 403, 404),
    body: bool = False,
) -> dict[str, Any]:
    responses = {"200": ok} | _errors(errors)
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "parameters": params, "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": _json(_ref("CreateInteractionRequest"))}
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


_MODEL = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "name", "baseModelId", "displayName", "description", "supportedGenerationMethods", "backend", "testDouble",
    ],
    "properties": {
        "name": {"type": "string", "examples": ["models/gemini-3-flash-preview"]},
        "baseModelId": {"type": "string"},
        "displayName": {"type": "string"},
        "description": {"type": "string"},
        "supportedGenerationMethods": {"type": "array", "items": {"type": "string"}},
        "backend": {"type": "string"},
        "testDouble": {"type": "boolean"},
        "aliasOf": {"type": "string"},
    },
}  # fmt: skip
_MODEL_LIST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["models"],
    "properties": {"models": {"type": "array", "items": _ref("Model")}, "nextPageToken": {"type": "string"}},
}


def _interaction_paths(schemas: dict[str, Any]) -> dict[str, Any]:
    def interaction_or_stream(*links: str) -> dict[str, Any]:
        return {
            "description": "The Interaction, or with stream=true a text/event-stream of InteractionEvent frames "
            "ending with 'data: [DONE]'",
            "content": {**_json(_ref("Interaction")), "text/event-stream": _event_stream(schemas)},
            "links": {name: _LINKS[name] for name in links},
        }

    query = [
        {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
        {"name": "last_event_id", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        {"name": "include_input", "in": "query", "schema": {"type": "boolean"}},
    ]
    cancelled = {
        "description": "The cancelled Interaction",
        "content": _json(_ref("Interaction")),
        "links": {name: _LINKS[name] for name in ("get", "delete", "continue")},
    }
    deleted = {
        "description": "Deleted",
        "content": _json({"type": "object", "maxProperties": 0}),
        "links": {"get": {"operationId": "getInteraction", "parameters": {**_BY_ID, "path.id": "$request.path.id"}}},
    }
    created = interaction_or_stream("get", "stream", "cancel", "delete", "continue")
    return {
        "/{version}/interactions": {
            "post": _op(
                "createInteraction",
                "Create an interaction",
                created,
                [_VERSION],
                (400, 401, 403, 404, 413, 415, 429, 503),
                body=True,
            ),
        },
        "/{version}/interactions/{id}": {
            "get": _op(
                "getInteraction",
                "Get an interaction, or replay and follow its events",
                interaction_or_stream("stream", "cancel", "delete", "continue"),
                [_VERSION, _ID, *query],
            ),
            "delete": _op("deleteInteraction", "Delete an interaction", deleted, [_VERSION, _ID]),
        },
        "/{version}/interactions/{id}/cancel": {
            "post": _op(
                "cancelInteraction",
                "Cancel a running interaction",
                cancelled,
                [_VERSION, _ID],
                (400, 401, 403, 404, 415),
            ),
        },
    }


def _other_paths() -> dict[str, Any]:
    page = [
        {"name": "pageSize", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "pageToken", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]*$"}},
    ]
    model = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
    healthy = {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    }
    ready = {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {"status": {"enum": ["ready", "unavailable"]}, "reason": {"type": "string"}},
    }
    return {
        "/{version}/models": {
            "get": _op(
                "listModels",
                "The served models (Gemini model resources)",
                {"description": "A page of models", "content": _json(_ref("ModelList"))},
                [_VERSION, *page],
            ),
        },
        "/{version}/models/{model}": {
            "get": _op(
                "getModel",
                "One served model",
                {"description": "A model resource", "content": _json(_ref("Model"))},
                [_VERSION, model],
            ),
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": [],
                "responses": {"200": {"description": "ok", "content": _json(healthy)}} | _errors((400, 403)),
            },
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: started, not shutting down, the database answering",
                "security": [],
                "responses": {
                    "200": {"description": "ready", "content": _json(ready)},
                    "503": {"description": "not ready", "content": _json(ready)},
                }
                | _errors((400, 403)),
            },
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text format; an API key where keys are configured)",
                "responses": {
                    "200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
                }
                | _errors((400, 401, 403)),
            },
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    schemas = _schemas() | {"Model": _MODEL, "ModelList": _MODEL_LIST}
    paths = _interaction_paths(schemas) | _other_paths()
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
