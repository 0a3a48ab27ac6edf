"""Content blocks and the annotations that text blocks carry (spec §2.2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from .base import WireModel

ImageMime = Literal[
    "image/png", "image/jpeg", "image/webp", "image/heic", "image/heif", "image/gif", "image/bmp", "image/tiff"
]
AudioMime = Literal[
    "audio/wav",
    "audio/mp3",
    "audio/aiff",
    "audio/aac",
    "audio/ogg",
    "audio/flac",
    "audio/mpeg",
    "audio/m4a",
    "audio/l16",
    "audio/opus",
    "audio/alaw",
    "audio/mulaw",
    "audio/webm",
]
VideoMime = Literal[
    "video/mp4",
    "video/mpeg",
    "video/mpg",
    "video/mov",
    "video/avi",
    "video/x-flv",
    "video/webm",
    "video/wmv",
    "video/3gpp",
]
Resolution = Literal["low", "medium", "high", "ultra_high"]


class UrlCitation(WireModel):
    type: Literal["url_citation"] = "url_citation"
    url: str | None = None
    title: str | None = None
    start_index: int | None = None
    end_index: int | None = None


class FileCitation(WireModel):
    type: Literal["file_citation"] = "file_citation"
    file_name: str | None = None
    document_uri: str | None = None
    media_id: str | None = None
    page_number: int | None = None
    source: str | None = None
    custom_metadata: dict[str, Any] | None = None
    start_index: int | None = None
    end_index: int | None = None


class ReviewSnippet(WireModel):
    review_id: str | None = None
    title: str | None = None
    url: str | None = None


class PlaceCitation(WireModel):
    type: Literal["place_citation"] = "place_citation"
    name: str | None = None
    place_id: str | None = None
    url: str | None = None
    review_snippets: list[ReviewSnippet] | None = None
    start_index: int | None = None
    end_index: int | None = None


class SpeechMetadata(WireModel):
    type: Literal["speech_metadata"] = "speech_metadata"
    speaker: str | None = None
    style: str | None = None
    start_index: int | None = None
    end_index: int | None = None


class WordInfo(WireModel):
    type: Literal["word_info"] = "word_info"
    text: str | None = None
    speaker: str | None = None
    start_offset: str | None = None
    end_offset: str | None = None
    start_index: int | None = None
    end_index: int | None = None


Annotation = Annotated[
    UrlCitation | FileCitation | PlaceCitation | SpeechMetadata | WordInfo, Field(discriminator="type")
]


class TextContent(WireModel):
    type: Literal["text"] = "text"
    text: str
    annotations: list[Annotation] | None = None


class ImageContent(WireModel):
    type: Literal["image"] = "image"
    data: str | None = None
    uri: str | None = None
    mime_type: ImageMime | None = None
    resolution: Resolution | None = None


class AudioContent(WireModel):
    type: Literal["audio"] = "audio"
    data: str | None = None
    uri: str | None = None
    mime_type: AudioMime | None = None
    channels: int | None = None
    sample_rate: int | None = None
    processing: str | dict[str, Any] | None = None


class DocumentContent(WireModel):
    type: Literal["document"] = "document"
    data: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    resolution: Resolution | None = None
    processing: str | dict[str, Any] | None = None


class VideoContent(WireModel):
    type: Literal["video"] = "video"
    data: str | None = None
    uri: str | None = None
    mime_type: VideoMime | None = None
    resolution: Resolution | None = None
    name: str | None = None
    processing: str | dict[str, Any] | None = None


def _default_text_type(value: Any) -> Any:
    """JS sends ``{"text": "..."}`` without a type; Python adds it. Accept both (spec §2.2)."""
    if isinstance(value, dict) and "type" not in value and "text" in value:
        return {"type": "text", **value}
    return value


Content = Annotated[
    TextContent | ImageContent | AudioContent | DocumentContent | VideoContent,
    Field(discriminator="type"),
    BeforeValidator(_default_text_type),
]

# A thought summary is text or an image.
SummaryContent = Annotated[TextContent | ImageContent, Field(discriminator="type"), BeforeValidator(_default_text_type)]
