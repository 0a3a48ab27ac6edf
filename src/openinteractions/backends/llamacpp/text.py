"""Streaming text helpers: UTF-8 across token boundaries, stop sequences, and native ``<think>`` blocks."""

from __future__ import annotations

import codecs

from ..base import ModelEvent, TextChunk, ThoughtChunk


class Utf8Stream:
    """Token pieces are bytes and may split a character; this yields only whole characters."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopScanner:
    """Holds back just enough text to recognise a stop sequence that spans several tokens."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if not self._stops:
            return text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ""
            return buffer[:cut]
        keep = max((len(s) - 1 for s in self._stops), default=0)
        safe = max(len(buffer) - keep, 0)
        while safe < len(buffer) and not any(s.startswith(buffer[safe:]) for s in self._stops):
            safe += 1
        self._held = buffer[safe:]
        return buffer[:safe]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class ThinkSplitter:
    """Routes text inside ``<think>…</think>`` (Qwen3 / DeepSeek-style reasoning) to thought chunks."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._thinking = False
        self._held = ""

    def feed(self, text: str) -> list[ModelEvent]:
        buffer, self._held = self._held + text, ""
        out: list[ModelEvent] = []
        while buffer:
            tag = self.CLOSE if self._thinking else self.OPEN
            at = buffer.find(tag)
            if at >= 0:
                self._emit(out, buffer[:at])
                self._thinking = not self._thinking
                buffer = buffer[at + len(tag) :]
                continue
            partial = next((k for k in range(len(tag) - 1, 0, -1) if buffer.endswith(tag[:k])), 0)
            self._emit(out, buffer[: len(buffer) - partial])
            self._held = buffer[len(buffer) - partial :]
            break
        return out

    def prime(self, written: str) -> None:
        """Take in the text an answer cut off by a crash had written. Its streamed text never ends with the
        start of a tag (that was held back), so nothing is held after it."""
        self.feed(written)
        self._held = ""

    def _emit(self, out: list[ModelEvent], text: str) -> None:
        if text:
            out.append(ThoughtChunk(text) if self._thinking else TextChunk(text))

    def flush(self) -> list[ModelEvent]:
        held, self._held = self._held, ""
        out: list[ModelEvent] = []
        self._emit(out, held)
        return out
