"""Image generation backends: a prompt in, one encoded image out.

Each ``[images.<name>]`` table picks an implementation with ``backend = "..."`` (``diffusers``: a local pipeline;
``openai``: an OpenAI-compatible ``/v1/images/generations``); a ``[models]`` entry with ``backend = "interleaved"``
pairs one with a text model (``engine/interleave.py``). Image backends know nothing of steps or requests'
formats: ``sizing.py`` turns ``image_config`` and ``response_format`` into the ``ImageRequest`` they draw.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .sizing import ImageLimits

# backend name -> module with ``create(options, base_dir) -> ImageBackend``
IMAGE_FACTORIES = {
    "diffusers": "openinteractions.backends.images.diffusers",
    "openai": "openinteractions.backends.images.openai",
}


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    width: int
    height: int
    mime_type: str  # image/png, image/jpeg or image/webp
    seed: int | None = None


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes  # the encoded image, in ``mime_type``
    mime_type: str


class ImageBackend(Protocol):
    limits: ImageLimits  # the sizes and formats it draws; a request outside them is a 400

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """Draw one image; a failure is a ``BackendError``."""
        ...

    async def aclose(self) -> None: ...


class ImageBackends:
    """The configured ``[images]`` backends by name, built at startup and closed with the server."""

    def __init__(self, backends: Mapping[str, ImageBackend]) -> None:
        self._backends = dict(backends)

    @classmethod
    def from_settings(cls, sections: Mapping[str, Any], base_dir: Path) -> ImageBackends:
        """``sections``: name -> settings with ``backend`` and ``options()`` (config.ImageSettings)."""
        backends: dict[str, ImageBackend] = {}
        for name, settings in sections.items():
            factory = IMAGE_FACTORIES.get(settings.backend)
            if factory is None:
                known = ", ".join(sorted(IMAGE_FACTORIES))
                raise ValueError(f"images {name!r}: unknown backend {settings.backend!r} (known: {known})")
            try:
                backends[name] = importlib.import_module(factory).create(settings.options(), base_dir)
            except ValueError as exc:
                raise ValueError(f"images {name!r}: {exc}") from exc
        return cls(backends)

    def get(self, name: str) -> ImageBackend | None:
        return self._backends.get(name)

    def names(self) -> list[str]:
        return list(self._backends)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
