"""The ``file_citation`` annotations of an answer given after file_search results (tools/file_search.py): the
chunks it drew on (those that share the most words with it)."""

from __future__ import annotations

import re
from typing import Any

from ..schema.content import FileCitation

_WORD = re.compile(r"\w{4,}")
_COMMON = frozenset(
    [
        "that",
        "this",
        "with",
        "from",
        "have",
        "were",
        "which",
        "their",
        "there",
        "about",
        "would",
        "these",
        "other",
        "into",
        "than",
        "then",
        "they",
        "them",
        "what",
        "when",
        "where",
        "your",
        "also",
        "been",
        "more",
        "some",
        "such",
        "only",
        "over",
        "most",
    ]
)
_MAX_CITED = 5


def file_citations(answer: str, items: list[dict[str, Any]], end: int) -> list[FileCitation]:
    """The chunks an answer drew on: those sharing the most words (of 4 letters or more, common ones aside)
    with it, best first; the first chunk found if none shares any. Each cites the whole text, ``end`` bytes."""
    words = set(_WORD.findall(answer.lower())) - _COMMON
    scored = []
    for position, item in enumerate(i for i in items if "text" in i):
        shared = len(words & set(_WORD.findall(str(item["text"]).lower())))
        scored.append((-shared, position, item))
    scored.sort(key=lambda entry: (entry[0], entry[1]))
    best = -scored[0][0] if scored else 0
    chosen = [item for shared, _, item in scored if -shared >= max(1, best // 2)][:_MAX_CITED] or [
        item for _, _, item in scored[:1]
    ]
    return [citation(item, end) for item in chosen]


def citation(item: dict[str, Any], end: int) -> FileCitation:
    return FileCitation(
        file_name=item.get("title"),
        document_uri=item.get("document_uri"),
        source=item.get("text"),
        page_number=item.get("page_number"),
        custom_metadata=item.get("custom_metadata"),
        start_index=0,
        end_index=end,
    )
