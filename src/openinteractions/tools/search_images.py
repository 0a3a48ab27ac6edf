"""The images the local search index finds: image files with their captions, and images that indexed HTML and
Markdown documents show, with their alt text, caption and the text around them.

A caption of an image file comes from a sidecar next to it (``cat.png.txt``, ``cat.txt``, ``cat.caption`` or
``cat.png.caption``), else from its file name. A file counts as an image by its first bytes, not its name.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
SIDECAR_SUFFIXES = (".txt", ".caption")
CONTEXT_WORDS = 60
CAPTION_CHARS = 1000
ALONE_WORDS = 8  # an image whose own paragraph has fewer words than this stands alone: its neighbours describe it
_BLOCKS = frozenset({"p", "li", "td", "th", "dd", "dt", "blockquote", "div", "section", "article", "main", "body"})
_MARKDOWN_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+[\"']([^\"']*)[\"'])?\s*\)")


@dataclass
class ImageRef:
    url: str  # where the image is: file:// for a local file
    caption: str  # its sidecar caption, alt text or figure caption
    context: str = ""  # the text around it in its document
    mime_type: str = ""


def sniff(head: bytes) -> str | None:
    """The image type of a file from its first bytes (PNG, JPEG, GIF, WebP), None if it is none of them."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _sidecars(image: Path) -> list[Path]:
    beside = [image.with_name(image.name + suffix) for suffix in SIDECAR_SUFFIXES]
    return beside + [image.with_suffix(suffix) for suffix in SIDECAR_SUFFIXES]


def is_sidecar(path: Path) -> bool:
    """A text file that captions an image next to it (``cat.txt`` beside ``cat.png``) is no document of its own."""
    if path.suffix.lower() not in SIDECAR_SUFFIXES:
        return False
    named = path.with_suffix("")  # cat.png.txt -> cat.png
    if named.suffix.lower() in IMAGE_SUFFIXES and named.is_file():
        return True
    return any(path.with_suffix(s).is_file() for s in IMAGE_SUFFIXES | {s.upper() for s in IMAGE_SUFFIXES})


def _words(text: str, limit: int) -> str:
    words = text.split()
    return " ".join(words[:limit]) + (" …" if len(words) > limit else "")


def _around(before: str, own: str, after: str) -> str:
    """The text that describes an image: its own paragraph, and the paragraphs beside it if it stands alone."""
    parts = [own] if len(own.split()) >= ALONE_WORDS else [before, own, after]
    return _words(" ".join(p for p in parts if p), CONTEXT_WORDS)


def image_file(path: Path) -> tuple[str, ImageRef] | None:
    """Title and image of an image file, None if its bytes are not an image."""
    with path.open("rb") as file:
        mime_type = sniff(file.read(16))
    if mime_type is None:
        return None
    caption = next((s.read_text(errors="replace").strip() for s in _sidecars(path) if s.is_file()), "")
    named = path.stem.replace("_", " ").replace("-", " ")
    title = caption.splitlines()[0][:200] if caption else named
    return title, ImageRef(path.resolve().as_uri(), (caption or named)[:CAPTION_CHARS], mime_type=mime_type)


def _located(src: str, base: Path) -> tuple[str, str] | None:
    """URL and type of an image a document at ``base`` points to: web URLs as they are, local paths if the file is
    there and is an image; None for anything else (data: URIs, missing files)."""
    parts = urlsplit(src)
    if parts.scheme in ("http", "https"):
        return src, mimetypes.guess_type(parts.path)[0] or ""
    if parts.scheme not in ("", "file"):
        return None
    path = Path(unquote(parts.path))
    path = path if path.is_absolute() else base.parent / path
    if not path.is_file():
        return None
    with path.open("rb") as file:
        mime_type = sniff(file.read(16))
    return (path.resolve().as_uri(), mime_type) if mime_type else None


def _text(element: Any) -> str:
    return " ".join(element.text_content().split()) if element is not None else ""


def html_images(raw: str, base: Path) -> list[ImageRef]:
    """Each ``<img>`` of an HTML document: its alt text (or the caption of its ``<figure>``) and the text of the
    block it stands in with the blocks beside it."""
    from lxml import etree, html  # type: ignore[import-untyped]  # trafilatura's parser

    try:
        root = html.document_fromstring(raw)
    except (etree.ParserError, ValueError):
        return []
    found = []
    for img in root.iter("img"):
        located = _located(img.get("src") or "", base)
        if located is None:
            continue
        figure = next(img.iterancestors("figure"), None)
        figcaption = figure.find(".//figcaption") if figure is not None else None
        caption = _text(figcaption) or (img.get("alt") or img.get("title") or "").strip()
        unit = figure if figure is not None else next((a for a in img.iterancestors() if a.tag in _BLOCKS), img)
        own = "" if unit is figure else _text(unit)
        context = _around(_text(unit.getprevious()), own, _text(unit.getnext()))
        found.append(ImageRef(located[0], caption[:CAPTION_CHARS], context, located[1]))
    return found


def markdown_images(raw: str, base: Path) -> list[ImageRef]:
    """Each ``![alt](src "title")`` of a Markdown document, with the paragraph it stands in and the two beside it."""
    paragraphs = re.split(r"\n\s*\n", raw)
    found = []
    for number, paragraph in enumerate(paragraphs):
        nearby = (number - 1, number, number + 1)
        for match in _MARKDOWN_IMAGE.finditer(paragraph):
            located = _located(match.group(2), base)
            if located is None:
                continue
            caption = (match.group(1) or match.group(3) or "").strip()
            before, own, after = (_plain(paragraphs[n]) if 0 <= n < len(paragraphs) else "" for n in nearby)
            found.append(ImageRef(located[0], caption[:CAPTION_CHARS], _around(before, own, after), located[1]))
    return found


def _plain(paragraph: str) -> str:
    """A Markdown paragraph's words, without its images and heading marks."""
    return " ".join(_MARKDOWN_IMAGE.sub("", paragraph).strip("# \n").split())
