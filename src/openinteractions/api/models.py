"""``GET /{v}/models``: the served models in the Gemini API's model-resource shape (camelCase, as
``client.models.list()`` expects). A test-double backend is marked as such in its description and flag."""

from __future__ import annotations

from typing import Any

from ..backends.registry import BackendRegistry, Route
from ..errors import invalid_argument


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


def model_list(
    registry: BackendRegistry, page_size: str | None = None, page_token: str | None = None
) -> dict[str, Any]:
    """All served names, paged like the Gemini API: ``pageSize`` (default 50, at most 1000) and the
    ``nextPageToken`` of the previous page."""
    models = []
    for route in registry.routes():
        models.append(_resource(route, route.name))
        models.extend(_resource(route, alias) for alias in registry.aliases_of(route.name))
    size = _number(page_size, "pageSize", 50)
    start = _number(page_token, "pageToken", 0)
    size = min(max(size, 1), 1000)
    page: dict[str, Any] = {"models": models[start : start + size]}
    if start + size < len(models):
        page["nextPageToken"] = str(start + size)
    return page


def _number(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise invalid_argument(f"Query parameter {name!r} must be a non-negative integer, got {value!r}.")
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18  # past every page; int() refuses > 4300 digits


def model_resource(registry: BackendRegistry, name: str) -> dict[str, Any] | None:
    route = registry.resolve(name)
    return _resource(route, name.removeprefix("models/")) if route else None
