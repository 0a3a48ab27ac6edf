"""Research notes: what the note taker answers, and the check that keeps a note only if its quote is in the text
of the document it names (one read in this run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_NOTE = {
    "type": "object",
    "properties": {"source": {"type": "integer"}, "claim": {"type": "string"}, "quote": {"type": "string"}},
    "required": ["source", "claim", "quote"],
}
NOTES_SCHEMA = {
    "type": "object",
    "properties": {"notes": {"type": "array", "items": _NOTE, "maxItems": 8}},
    "required": ["notes"],
}


@dataclass
class Note:
    url: str
    title: str
    claim: str
    quote: str


def _squeeze(text: str) -> str:
    return " ".join(text.split()).casefold()


def checked(item: Any, pages: list[dict[str, Any]]) -> Note | None:
    """A note whose quote is in the text of the document it names (one read in this run), else None."""
    if not isinstance(item, dict):
        return None
    source, claim, quote = item.get("source"), item.get("claim"), item.get("quote")
    if not (isinstance(source, int) and 1 <= source <= len(pages) and isinstance(claim, str) and claim.strip()):
        return None
    if not isinstance(quote, str) or len(quote.strip()) < 8:
        return None
    page = pages[source - 1]
    if _squeeze(quote) not in _squeeze(str(page.get("text") or "")):
        return None
    return Note(page["url"], str(page.get("title") or page["url"]), claim.strip(), quote.strip())
