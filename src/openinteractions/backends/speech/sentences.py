"""Text as it streams in, cut into sentences to speak: the first one is spoken while the model writes on."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (with closing quotes or brackets) before white space, or at a line break.
_END = re.compile(r"[.!?…\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*\s+|\n+")
_MAX_CHARS = 400  # a sentence that runs on is cut at its last comma or space before this


class SentenceSplitter:
    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        """The sentences ``text`` completes, each with something to say."""
        self._pending += text
        out: list[str] = []
        while True:
            end = _END.search(self._pending)
            if end is not None and end.end() <= _MAX_CHARS:
                cut = end.end()
            elif len(self._pending) > _MAX_CHARS:
                cut = _soft_cut(self._pending[:_MAX_CHARS])
            else:
                break
            sentence, self._pending = self._pending[:cut], self._pending[cut:]
            if _sayable(sentence):
                out.append(sentence.strip())
        return out

    def flush(self) -> str | None:
        """What is left once the text has ended."""
        rest, self._pending = self._pending, ""
        return rest.strip() if _sayable(rest) else None


def _soft_cut(text: str) -> int:
    for mark in (", ", "; ", " "):
        at = text.rfind(mark)
        if at > 0:
            return at + len(mark)
    return len(text)


def _sayable(text: str) -> bool:
    return any(c.isalnum() for c in text)
