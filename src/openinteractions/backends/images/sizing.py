"""From a request's ``generation_config.image_config`` and image ``response_format`` to the pixels and format one
image backend draws, or an ``ImageOptionError`` that names the field it cannot honour (a 400)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...schema.generation import ImageResponseFormat

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:8", "8:1", "1:4", "4:1")
IMAGE_SIZES = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}  # the side of a square image of the same area
MIME_TYPES = ("image/png", "image/jpeg", "image/webp")
_CONFIG_KEYS = frozenset({"aspect_ratio", "image_size"})


class ImageOptionError(ValueError):
    """An image option the backend cannot honour; the message names the request field."""


@dataclass(frozen=True)
class ImageLimits:
    """What one image backend draws."""

    default_size: int  # the side of a square image when the request names no image_size
    max_size: int  # the longest side it draws
    multiple: int = 8  # width and height are multiples of this
    default_mime_type: str = "image/jpeg"
    sizes: tuple[tuple[int, int], ...] = ()  # an upstream that draws only these sizes (empty: any)


@dataclass(frozen=True)
class ImageShape:
    width: int
    height: int
    mime_type: str


def image_shape(limits: ImageLimits, config: dict[str, Any] | None, fmt: ImageResponseFormat | None) -> ImageShape:
    """The image to draw for this request. Raises ``ImageOptionError`` naming what cannot be honoured."""
    config = config or {}
    for key in sorted(config.keys() - _CONFIG_KEYS):
        raise ImageOptionError(f"'generation_config.image_config.{key}' is not supported (aspect_ratio, image_size)")
    ratio = _one(config, fmt, "aspect_ratio")
    size = _one(config, fmt, "image_size")
    if ratio is not None and ratio[1] not in ASPECT_RATIOS:
        raise ImageOptionError(f"{ratio[0]} {ratio[1]!r} is not an aspect ratio ({', '.join(ASPECT_RATIOS)})")
    if size is not None and size[1] not in IMAGE_SIZES:
        raise ImageOptionError(f"{size[0]} {size[1]!r} is not an image size ({', '.join(IMAGE_SIZES)})")
    side = IMAGE_SIZES[size[1]] if size is not None else limits.default_size
    width, height = _pixels(side, ratio[1] if ratio is not None else "1:1", limits.multiple)
    if max(width, height) > limits.max_size:
        field = size[0] if size is not None else ratio[0] if ratio is not None else "the default size"
        raise ImageOptionError(
            f"{field} asks for {width}x{height} pixels; this model's image backend draws at most {limits.max_size} "
            "pixels a side (its max_size)"
        )
    if limits.sizes:
        width, height = _fixed_size(limits, width, height, ratio, size)
    return ImageShape(width, height, _mime_type(limits, fmt))


def _one(config: dict[str, Any], fmt: ImageResponseFormat | None, key: str) -> tuple[str, str] | None:
    """The value of ``key`` and the field that set it; both places may set it, but not differently."""
    in_config, in_format = config.get(key), getattr(fmt, key, None) if fmt is not None else None
    if in_config is not None and in_format is not None and in_config != in_format:
        raise ImageOptionError(
            f"'generation_config.image_config.{key}' {in_config!r} and 'response_format.{key}' {in_format!r} differ"
        )
    if in_config is not None:
        return f"'generation_config.image_config.{key}'", str(in_config)
    if in_format is not None:
        return f"'response_format.{key}'", str(in_format)
    return None


def _pixels(side: int, ratio: str, multiple: int) -> tuple[int, int]:
    """The area of a ``side``-square at this aspect ratio, each side rounded to the backend's multiple."""
    w, h = (int(n) for n in ratio.split(":"))
    scale = math.sqrt(w / h)
    return _round(side * scale, multiple), _round(side / scale, multiple)


def _round(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def _fixed_size(
    limits: ImageLimits, width: int, height: int, ratio: tuple[str, str] | None, size: tuple[str, str] | None
) -> tuple[int, int]:
    """An upstream with a fixed list of sizes: the one of the same aspect ratio (within 3 %) nearest in area."""
    w, h = (int(n) for n in (ratio[1] if ratio is not None else "1:1").split(":"))
    wanted = w / h  # as asked: the rounded sides of a small image stray from it
    same = [s for s in limits.sizes if abs(s[0] / s[1] - wanted) / wanted <= 0.03]
    if not same:
        drawn = ", ".join(f"{w}x{h}" for w, h in limits.sizes)
        field = ratio[0] if ratio is not None else size[0] if size is not None else "the default size"
        raise ImageOptionError(f"{field}: this model's image backend draws only {drawn} (its sizes)")
    return min(same, key=lambda s: abs(s[0] * s[1] - width * height))


def _mime_type(limits: ImageLimits, fmt: ImageResponseFormat | None) -> str:
    if fmt is not None and fmt.delivery not in (None, "inline"):
        raise ImageOptionError(f"'response_format.delivery' {fmt.delivery!r} is not supported: images are inline")
    mime = fmt.mime_type if fmt is not None and fmt.mime_type is not None else limits.default_mime_type
    if mime not in MIME_TYPES:
        raise ImageOptionError(f"'response_format.mime_type' {mime!r} is not supported ({', '.join(MIME_TYPES)})")
    return mime


def image_tokens(width: int, height: int) -> int:
    """Output tokens for one image, as Gemini 3's image models bill theirs: 1120 up to 2K, 2000 above."""
    return 1120 if max(width, height) <= 2048 else 2000
