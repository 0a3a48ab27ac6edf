"""A document's bytes → chunks: its text (pypdf page by page for PDF, trafilatura for HTML, the rest decoded),
cut into runs of whitespace-separated tokens that overlap their neighbours.

A PDF is chunked page by page, so that each chunk has one page for its citation's ``page_number``. Pure and
synchronous (the caller runs it in a thread).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from ..engine.documents import PDF, Limits, Unreadable, extract, media_type

_MAX_CHARS = 20_000_000  # a document's text, all pages together
_MAX_PAGES = 5_000


@dataclass(frozen=True)
class Chunk:
    text: str
    page: int | None = None  # the PDF page (from 1) the chunk is on


def chunk_document(data: bytes, mime_type: str, tokens: int, overlap: int) -> list[Chunk]:
    """The document's chunks; ``Unreadable`` says why there are none."""
    pages = _pdf_pages(data) if media_type(mime_type) == PDF else [(None, _text(data, mime_type))]
    step = max(1, tokens - min(overlap, tokens - 1))
    chunks = []
    for page, text in pages:
        words = text.replace("\x00", " ").split()  # a NUL is no word (and PostgreSQL's text cannot hold one)
        for start in range(0, len(words), step):
            chunks.append(Chunk(" ".join(words[start : start + tokens]), page))
            if start + tokens >= len(words):
                break
    if not chunks:
        raise Unreadable("the document has no text")
    return chunks


def _text(data: bytes, mime_type: str) -> str:
    kind = media_type(mime_type)
    if kind in ("", "application/octet-stream"):
        kind = "text/plain"
    return extract(data, kind, Limits(_MAX_PAGES, _MAX_CHARS)).text


def _pdf_pages(data: bytes) -> list[tuple[int | None, str]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("the PDF is encrypted with a password")
        pages = [(number, page.extract_text() or "") for number, page in enumerate(reader.pages[:_MAX_PAGES], 1)]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, Unreadable):
            raise
        raise Unreadable(f"the PDF cannot be read: {exc}") from None
    if not any(re.search(r"\S", text) for _, text in pages):
        raise Unreadable("the PDF has no text layer (scanned pages need OCR, which this server does not run)")
    return list(pages)
