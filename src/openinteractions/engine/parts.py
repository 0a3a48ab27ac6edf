"""The structure an illustrating text model writes, read as it streams.

The model answers ``{"parts": [{"text": "..."}, {"image": "<what the image shows>"}, ...]}``. ``PartsReader``
takes the answer's text in chunks and gives back, in order, the text as soon as it is written (a part's text
streams character by character) and each image description once it is complete. The document is parsed again
from its start at each chunk (pydantic-core's ``from_json`` with ``allow_partial="trailing-strings"``, which
closes an unterminated string); answers are a few kilobytes, so this costs microseconds per chunk.
An answer that does not open with ``{`` was written as prose (a model under no grammar): it streams as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

PARTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "parts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "required": ["text"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"image": {"type": "string", "minLength": 1}},
                        "required": ["image"],
                        "additionalProperties": False,
                    },
                ]
            },
        }
    },
    "required": ["parts"],
    "additionalProperties": False,
}

PARTS_INSTRUCTION = (
    "Your answer mixes text and generated images. Write it as JSON: "
    '{"parts": [{"text": "..."}, {"image": "..."}, {"text": "..."}]}. A text part holds Markdown text; an image '
    "part holds a one-sentence description of a picture to draw there (subject, setting, style), which an image "
    "model draws. Put each image where it belongs in the text."
)


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    description: str


Piece = Text | Image


class PartsReader:
    def __init__(self) -> None:
        self._buffer: list[str] = []
        self._prose: bool | None = None  # None: not known until the first visible character
        self._done = 0  # parts given out whole
        self._shown = 0  # characters of the open (last) text part given out

    def feed(self, chunk: str) -> list[Piece]:
        self._buffer.append(chunk)
        if self._prose is None:
            start = "".join(self._buffer).lstrip()
            if not start:
                return []
            self._prose = not start.startswith("{")
            if self._prose:
                return [Text("".join(self._buffer).lstrip())]
            return self._read(final=False)
        if self._prose:
            return [Text(chunk)] if chunk else []
        return self._read(final=False)

    def close(self) -> list[Piece]:
        """The end of the answer: the last part is complete (or cut off, if the model ran out of tokens: then a
        half-written image description is dropped)."""
        if self._prose is not False:
            return []
        return self._read(final=True)

    def _read(self, final: bool) -> list[Piece]:
        parts = self._parts(final)
        pieces: list[Piece] = []
        for index in range(self._done, len(parts)):
            whole = index < len(parts) - 1 or final
            pieces.extend(self._piece(parts[index], whole))
            if not whole:
                break
            self._done, self._shown = index + 1, 0
        return pieces

    def _piece(self, part: Any, whole: bool) -> list[Piece]:
        if not isinstance(part, dict):
            return []
        text = part.get("text")
        if isinstance(text, str):
            new, self._shown = text[self._shown :], len(text)
            return [Text(new)] if new else []
        image = part.get("image")
        if whole and isinstance(image, str) and image.strip():
            return [Image(image.strip())]
        return []

    def _parts(self, final: bool) -> list[Any]:
        text = "".join(self._buffer)
        try:
            document = from_json(text, allow_partial=False if final else "trailing-strings")
        except ValueError:
            if not final:
                return []
            document = _partial(text)
        parts = document.get("parts") if isinstance(document, dict) else None
        if not isinstance(parts, list):
            return []
        if final and text.strip() and not _complete(text):
            # cut off: the last part may be half written; an image description then is not drawn
            last = parts[-1] if parts else None
            if isinstance(last, dict) and "image" in last:
                parts = parts[:-1]
        return parts


def _partial(text: str) -> Any:
    try:
        return from_json(text, allow_partial="trailing-strings")
    except ValueError:
        return None


def _complete(text: str) -> bool:
    try:
        from_json(text)
    except ValueError:
        return False
    return True
