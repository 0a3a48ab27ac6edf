"""An incremental Server-Sent Events decoder for upstream streams: bytes in, (event, data) messages out.

It follows the SSE grammar where it matters (``data:`` lines joined by newlines, one optional space after the
colon, ``\\r\\n`` or ``\\n`` line ends, comment lines ignored) and is lenient where upstreams differ: a message
without a blank line before the end of the stream is still delivered, and llama.cpp server's ``error: {...}``
lines (a field SSE does not define) come out as an ``error`` event.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    event: str  # "message" unless the upstream named it
    data: bytes


class SSEDecoder:
    def __init__(self) -> None:
        self._tail = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Message]:
        buffer = self._tail + chunk if self._tail else chunk
        lines = buffer.split(b"\n")
        self._tail = lines.pop()
        out: list[Message] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if line[:6] == b"data: ":  # the common case, inline
                data.append(line[6:])
            elif not line and data and not self._event:
                out.append(Message("message", data[0] if len(data) == 1 else b"\n".join(data)))
                data.clear()
            else:
                self._line(line, out)
                data = self._data
        return out

    def close(self) -> list[Message]:
        """The end of the stream: whatever was pending is a message too."""
        out: list[Message] = []
        if self._tail:
            tail, self._tail = self._tail, b""
            self._line(tail.rstrip(b"\r"), out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Message]) -> None:
        if not line:
            if self._data:
                event = self._event.decode("utf-8", "replace") if self._event else "message"
                out.append(Message(event, b"\n".join(self._data)))
            self._data.clear()
            self._event = b""
            return
        if line[0] == 0x3A:  # ":" starts a comment (keep-alives such as ": ping")
            return
        name, colon, value = line.partition(b":")
        if not colon:
            name, value = line, b""
        elif value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"error":  # llama.cpp server: "error: {json}"
            self._event = b"error"
            self._data.append(value)
