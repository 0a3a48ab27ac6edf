"""uvicorn's httptools protocol, with a response's head and the first bytes of its body in one write.

uvicorn writes the status line and headers as soon as the app sends ``http.response.start``, and the event
loop (uvloop) writes each ``transport.write`` to the socket at once. A streamed response therefore costs one
more send(2), and one more wake-up of the client, than it has bodies: on loopback that is a sizeable part of
a short stream's cost. Here the head waits for the first body write (which our streams send right after it)
or, failing that, for the end of the current loop iteration; the bytes and their order are unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..errors import ApiError

_HEAD = b"HTTP/1.1 "


class HeadHoldingTransport:
    """Wraps the connection's transport: a write that starts a response is held until the next write or
    the end of the loop iteration, whichever comes first; everything else passes through."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif data[:9] == _HEAD:
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        held: Any = HeadHoldingTransport(transport, asyncio.get_running_loop())
        super().connection_made(held)

    def send_400_response(self, msg: str) -> None:
        """A request that does not parse as HTTP (a Content-Length of '+5', one with Transfer-Encoding too):
        uvicorn answers in plain text; the API's clients expect its JSON error shape on every error."""
        body = ApiError(400, msg).body()
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
