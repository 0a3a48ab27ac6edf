"""Hybrid retrieval: BM25 over the chunks' text (the catalog's: SQLite FTS5, or PostgreSQL's full-text search)
and cosine similarity of their embeddings, each a ranking of its own, fused by reciprocal rank (a chunk scores
the sum of ``1 / (k + rank)`` over the rankings it is in). Fusing ranks, not scores, needs no calibration
between two scales that have nothing in common."""

from __future__ import annotations

import asyncio
import json
import logging
from array import array
from collections.abc import Sequence

from .catalog import Catalog, Found
from .embeddings import Embedder, EmbeddingError
from .metadata_filter import Predicate, metadata_dict

logger = logging.getLogger(__name__)


def fuse(rankings: Sequence[Sequence[int]], k: int) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk in enumerate(ranking, 1):
            scores[chunk] = scores.get(chunk, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda chunk: -scores[chunk])


def by_cosine(query: Sequence[float], rows: list[tuple[int, bytes]], limit: int) -> list[int]:
    """Chunk ids by the dot product of their (normalised) vectors with ``query``, best first."""
    if not rows:
        return []
    try:
        import numpy as np
    except ImportError:
        scored = [(sum(a * b for a, b in zip(array("f", blob), query, strict=False)), i) for i, blob in rows]
        return [i for _, i in sorted(scored, reverse=True)[:limit]]
    matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.float32).reshape(len(rows), -1)
    scores = matrix @ np.asarray(query, dtype=np.float32)
    order = np.argsort(-scores)[:limit]
    return [rows[int(i)][0] for i in order]


class Retrieval:
    def __init__(self, catalog: Catalog, embedder: Embedder | None, rrf_k: int) -> None:
        self.catalog = catalog
        self.embedder = embedder
        self.rrf_k = rrf_k

    async def search(
        self,
        stores: list[str],
        embedded: list[str],
        query: str,
        top_k: int,
        predicate: Predicate | None = None,
        semantic: bool = True,
    ) -> list[Found]:
        """The ``top_k`` best chunks of ``stores`` for ``query``; ``embedded``: the stores whose vectors the
        embedder made (the others are searched by BM25 only); ``predicate``: which documents may be found."""
        documents = None
        if predicate is not None:
            rows = await asyncio.to_thread(self.catalog.active_documents, stores)
            documents = [row[0] for row in rows if predicate(metadata_dict(_loads(row[1])))]
        pool = max(4 * top_k, 20)
        rankings = [await asyncio.to_thread(self.catalog.bm25, stores, documents, query, pool)]
        if semantic and self.embedder is not None and embedded:
            rows_with_vectors = await asyncio.to_thread(self.catalog.vectors, embedded, documents)
            if rows_with_vectors:
                try:
                    vector = await self.embedder.query(query)
                except EmbeddingError as exc:  # the embeddings server is down: words alone still find something
                    logger.warning("file_search: BM25 only for this query: %s", exc)
                else:
                    rankings.append(by_cosine(vector, rows_with_vectors, pool))
        return await asyncio.to_thread(self.catalog.found, fuse(rankings, self.rrf_k)[:top_k])


def _loads(text: str) -> list[dict[str, object]]:
    value = json.loads(text)
    return value if isinstance(value, list) else []
