"""Encoded images: a PIL image to bytes in the format asked for; the format of bytes an upstream sent."""

from __future__ import annotations

import io
from typing import Any

_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def encode(image: Any, mime_type: str) -> bytes:
    """``image``: a PIL image."""
    if mime_type == "image/jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    options = {"quality": 90} if mime_type != "image/png" else {}
    image.save(out, format=_FORMATS[mime_type], **options)
    return out.getvalue()


def sniff(data: bytes) -> str | None:
    """The format of encoded image bytes, from their signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def convert(data: bytes, mime_type: str) -> bytes:
    """Re-encode ``data`` (any format Pillow reads) as ``mime_type``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return encode(image, mime_type)


def dimensions(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size
