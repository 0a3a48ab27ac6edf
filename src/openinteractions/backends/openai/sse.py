"""An incremental Server-Sent Events decoder for upstream streams: bytes in, (event, data) messages out.

It follows the SSE grammar where it matters (``data:`` lines joined by newlines, one optional space after the
colon, ``\\r\\n`` or ``\\n`` line ends, comment lines ignored) and is lenient where upstreams differ: a message
without a blank line before the end of the stream is still delivered, and llama.cpp server's ``error: {...}``
lines (a field SSE does not define) come out as an ``error`` event.
"""

from __future__ import annotations

Message = tuple[str, bytes]  # (event, data); the event is "message" unless the upstream named it


class SSEDecoder:
    def __init__(self) -> None:
        self._tail = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Message]:
        buffer = self._tail + chunk if self._tail else chunk
        if self._data or self._event or b"\r" in buffer:
            return self._lines(buffer)
        # The common case, a message at a time: "data: <one line>" and a blank line.
        parts = buffer.split(b"\n\n")
        self._tail = parts.pop()  # what follows the last blank line: a message still arriving
        out: list[Message] = []
        for part in parts:
            if part[:6] == b"data: " and b"\n" not in part:
                out.append(("message", part[6:]))
            elif part:
                for line in part.split(b"\n"):
                    self._line(line, out)
                self._line(b"", out)
        return out

    def _lines(self, buffer: bytes) -> list[Message]:
        lines = buffer.split(b"\n")
        self._tail = lines.pop()
        out: list[Message] = []
        for line in lines:
            self._line(line[:-1] if line[-1:] == b"\r" else line, out)
        return out

    def close(self) -> list[Message]:
        """The end of the stream: whatever was pending is a message too."""
        out: list[Message] = []
        tail, self._tail = self._tail, b""
        for line in tail.split(b"\n") if tail else ():
            self._line(line.rstrip(b"\r"), out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Message]) -> None:
        if not line:
            if self._data:
                event = self._event.decode("utf-8", "replace") if self._event else "message"
                out.append((event, b"\n".join(self._data)))
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
