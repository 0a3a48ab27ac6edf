"""uvicorn's httptools protocol, with limits on what a client may send and how slowly, and a response's head
sent with the first bytes of its body.

Limits. httptools has none: it gathers a header's value for as long as the client sends it (a 64 MiB header
was read whole, re-copied at every read), and uvicorn times out nothing but a connection that went idle after a
response. Here every connection has one timer and a phase: idle (no request in progress, a new connection
included), head (a request's first byte has come, its headers have not all), body (its body is arriving), busy
(the application has the whole request). Idle, head and body have deadlines; a busy connection has none, its
response lasts as long as the run. Phase changes only note the time; the timer, when it fires, reads the
phase's deadline and re-arms itself if it has not passed, so the per-request cost is a few assignments, not a
timer set and cancelled per request. A head, and a chunked body's trailer fields (which httptools gathers the
same way), are counted as their bytes arrive and refused with a 431 once over the limit, before httptools has
buffered more than the limit (a request that begins mid-read, behind another, may add the rest of that read).

Head holding. uvicorn writes the status line and headers as soon as the app sends ``http.response.start``,
and the event loop (uvloop) writes each ``transport.write`` to the socket at once. A streamed response
therefore costs one more send(2), and one more wake-up of the client, than it has bodies: on loopback that is a
sizeable part of a short stream's cost. Here the head waits for the first body write (which our streams send
right after it) or, failing that, for the end of the current loop iteration; the bytes and their order are
unchanged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from ..config import ServerSettings
from ..errors import ApiError

_HEAD = b"HTTP/1.1 "
_IDLE, _HEAD_PHASE, _BODY, _BUSY = range(4)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The ``server.*`` limits this protocol applies (config.py has their defaults and meaning)."""

    max_head_bytes: int
    max_header_count: int
    head_timeout: float
    body_timeout: float
    min_body_rate: int  # bytes per second; 0: none
    idle_timeout: float

    @classmethod
    def of(cls, server: ServerSettings) -> HttpLimits:
        return cls(
            max_head_bytes=server.max_header_bytes,
            max_header_count=server.max_header_count,
            head_timeout=server.header_timeout_seconds,
            body_timeout=server.body_timeout_seconds,
            min_body_rate=server.min_body_rate,
            idle_timeout=server.idle_timeout_seconds,
        )


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


class _Refused(Exception):
    """Raised in a parser callback to stop the parser; the answer is in ``HttpProtocol._refusal``."""


class HttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or HttpLimits.of(ServerSettings())
        self._phase = _IDLE
        self._since = 0.0  # when the phase began
        self._body_bytes = 0
        # Bytes of the head (or trailer section) being read; None while the parser is in a body.
        self._head_bytes: int | None = 0
        self._refusal: ApiError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        held: Any = HeadHoldingTransport(transport, self.loop)
        super().connection_made(held)
        self._enter(_IDLE, self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        limit = self.limits.max_head_bytes
        while True:
            counted = self._head_bytes
            if counted is None or len(data) <= limit - counted:
                if counted is not None:
                    self._head_bytes = counted + len(data)
                self._feed(data)
                return
            # Only as much as the limit allows: if that does not end the head, it is too large.
            room = limit - counted
            self._head_bytes = limit
            if not self._feed(data[:room]):
                return
            if self._head_bytes == limit:  # the parser callbacks reset it when the head ends
                part = "head" if self._phase == _HEAD_PHASE else "trailer section"
                self._refuse(_too_large(f"Request {part} exceeds {limit} bytes (server.max_header_bytes)."))
                return
            data = data[room:]

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # served as plain HTTP: the API has nothing to upgrade to
        except httptools.HttpParserError:
            refusal, self._refusal = self._refusal, None
            if refusal is None:
                self.logger.warning("Invalid HTTP request received.")
                refusal = ApiError(400, "Invalid HTTP request received.")
            self._refuse(refusal)
            return False
        return True

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._enter(_HEAD_PHASE, self.limits.head_timeout)

    def on_headers_complete(self) -> None:
        if self.url[:1] not in (b"/", b"*"):
            # An absolute-form target (or CONNECT's authority) is for a proxy, and names a host that uvicorn drops
            # while the Host header was what the guard checked: this server is no proxy.
            self._refusal = ApiError(400, "Request target must be a path (origin-form); this server is not a proxy.")
            raise _Refused
        if len(self.headers) > self.limits.max_header_count:
            count = self.limits.max_header_count
            self._refusal = _too_large(f"Request has more than {count} header fields (server.max_header_count).")
            raise _Refused
        self._head_bytes = None
        self._body_bytes = 0
        self._enter(_BODY, self.limits.body_timeout)
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._head_bytes = 0  # the last chunk's header is followed by the trailer fields

    def on_body(self, body: bytes) -> None:
        self._head_bytes = None
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        if self.cycle.response_complete:
            self._enter(_IDLE, self.limits.idle_timeout)
        else:
            self._phase = _BUSY
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, less the keep-alive timer it arms after every response: the connection's timer does it."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase == _BUSY:
            self._enter(_IDLE, self.limits.idle_timeout)

    # Deadlines

    def _enter(self, phase: int, timeout: float) -> None:
        now = self.loop.time()
        self._phase = phase
        self._since = now
        deadline = now + timeout
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        self._timer = self.loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        phase, limits = self._phase, self.limits
        if phase == _BUSY or self.transport.is_closing():
            return
        now = self.loop.time()
        if phase == _BODY and self.flow.read_paused:
            # The application is not reading yet, so the client cannot send: its time starts again afterwards.
            self._since, self._body_bytes = now, 0
        if phase == _IDLE:
            deadline = self._since + limits.idle_timeout
        elif phase == _HEAD_PHASE:
            deadline = self._since + limits.head_timeout
        else:
            deadline = self._since + limits.body_timeout
            if limits.min_body_rate:
                deadline += self._body_bytes / limits.min_body_rate
        if now < deadline:
            self._arm(deadline)
        elif phase == _IDLE:
            self.transport.close()
        elif phase == _HEAD_PHASE:
            self._refuse(_timeout(f"The request's head did not arrive within {limits.head_timeout:g} s", "header"))
        else:
            rate = f" plus a second per {limits.min_body_rate} bytes" if limits.min_body_rate else ""
            self._refuse(_timeout(f"The request's body did not arrive within {limits.body_timeout:g} s{rate}", "body"))

    # Answers

    def send_400_response(self, msg: str) -> None:
        """A request that does not parse as HTTP (a Content-Length of '+5', one with Transfer-Encoding too):
        uvicorn answers in plain text; the API's clients expect its JSON error shape on every error."""
        self._refuse(ApiError(400, msg))

    def _refuse(self, error: ApiError) -> None:
        """Answers with ``error`` and closes the connection; nothing more the client sent is read."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application sees its client leave: this is the last answer
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        body = error.body()
        head = [STATUS_LINE[error.http_status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _too_large(message: str) -> ApiError:
    return ApiError(431, message, "INVALID_ARGUMENT")


def _timeout(what: str, setting: str) -> ApiError:
    return ApiError(408, f"{what} (server.{setting}_timeout_seconds).", "DEADLINE_EXCEEDED")
