"""A document's bytes → the text a text-only model reads: pypdf for PDF, trafilatura for HTML, the rest decoded.

Pure and synchronous (callers run it in a thread): no I/O but the bytes given. ``Unreadable`` says why a
document cannot become text, in words that go into the 400.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

PDF = "application/pdf"
HTML = frozenset({"text/html", "application/xhtml+xml"})
# Text as it is: its characters are what the model should read.
PLAIN = frozenset(
    {
        "text/plain",
        "text/csv",
        "text/tab-separated-values",
        "text/markdown",
        "text/x-markdown",
        "text/xml",
        "application/xml",
        "application/json",
        "text/rtf",
        "text/x-python",
        "text/javascript",
        "application/x-javascript",
        "text/css",
        "text/x-c",
    }
)
READABLE = frozenset({PDF}) | HTML | PLAIN


class Unreadable(ValueError):
    """The document cannot be turned into text; the message says why."""


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_chars: int


@dataclass(frozen=True)
class Extracted:
    text: str
    pages: int | None = None  # a PDF's pages read
    cut: bool = False  # the text, or the pages, were cut at a limit


def media_type(mime_type: str | None) -> str:
    """``text/csv; charset=utf-8`` → ``text/csv``."""
    return (mime_type or "").split(";", 1)[0].strip().lower()


def extract(data: bytes, mime_type: str, limits: Limits) -> Extracted:
    kind = media_type(mime_type)
    if kind == PDF:
        return _pdf(data, limits)
    if kind in HTML:
        return _cut(_html(data), limits.max_chars)
    if kind in PLAIN:
        return _cut(_decode(data), limits.max_chars)
    raise Unreadable(
        f"documents of type {kind or 'unknown'!r} cannot be read as text (readable: PDF, HTML, plain text, CSV, "
        "markdown, JSON, XML)"
    )


def _decode(data: bytes) -> str:
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return data.decode("latin-1")  # any byte is a latin-1 character: old CSV exports, mostly


def _html(data: bytes) -> str:
    import trafilatura

    page = _decode(data)
    text = trafilatura.extract(page, include_comments=False, include_tables=True, favor_recall=True)
    if not text:
        raise Unreadable("the HTML document has no readable text")
    return str(text)


def _pdf(data: bytes, limits: Limits) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("the PDF is encrypted with a password")
        pages = reader.pages
        total = len(pages)
        texts: list[str] = []
        size = 0
        read = 0
        for page in pages[: limits.max_pages]:
            text = page.extract_text() or ""
            texts.append(text)
            read += 1
            size += len(text)
            if size >= limits.max_chars:
                break
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, Unreadable):
            raise
        raise Unreadable(f"the PDF cannot be read: {exc}") from None
    joined = "\n\n".join(t.strip() for t in texts if t.strip())
    if not joined:
        raise Unreadable("the PDF has no text layer (scanned pages need OCR, which this server does not run)")
    result = _cut(joined, limits.max_chars)
    return Extracted(result.text, read, result.cut or read < total)


def _cut(text: str, max_chars: int) -> Extracted:
    text = text.strip()
    if len(text) <= max_chars:
        return Extracted(text)
    return Extracted(text[:max_chars], cut=True)
