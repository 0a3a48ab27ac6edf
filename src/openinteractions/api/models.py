"""``GET /{v}/models``: the served models in the Gemini API's model-resource shape (camelCase, as
``client.models.list()`` expects). A test-double backend is marked as such in its description and flag."""

from __future__ import annotations

from typing import Any

from ..backends.registry import BackendRegistry, Route


def _resource(route: Route, name: str) -> dict[str, Any]:
    test_double = route.backend.capabilities.test_double
    description = route.description or f"Served by the {route.backend_name} backend."
    if test_double:
        description = f"TEST DOUBLE: scripted responses, not a model. {description}"
    resource: dict[str, Any] = {
        "name": f"models/{name}",
        "baseModelId": route.name,
        "displayName": name,
        "description": description,
        "supportedGenerationMethods": ["interactions"],
        "backend": route.backend_name,
        "testDouble": test_double,
    }
    if name != route.name:
        resource["aliasOf"] = f"models/{route.name}"
    return resource


def model_list(registry: BackendRegistry) -> dict[str, Any]:
    models = []
    for route in registry.routes():
        models.append(_resource(route, route.name))
        models.extend(_resource(route, alias) for alias in registry.aliases_of(route.name))
    return {"models": models}


def model_resource(registry: BackendRegistry, name: str) -> dict[str, Any] | None:
    route = registry.resolve(name)
    return _resource(route, name.removeprefix("models/")) if route else None
