"""A lean HTTP/1.1 transport for httpx, for the one kind of exchange this backend has: a JSON request answered by
a long chunked stream of small events.

httpx's own transport hands every HTTP chunk through h11 and five async-iterator layers; an upstream writes one
chunk per token, so that costs about 20 µs a token (measured here), as much as the rest of the server spends on
it. This transport reads whatever the socket has, strips the chunk framing from the whole buffer at once and
yields it as one piece, so a burst of tokens costs one pass. Requests, responses, exceptions and content
decoding stay httpx's; health checks go through ``httpx.AsyncClient``, the streaming request straight to this
transport (the client's cookie and redirect handling has nothing to do there). ``http_transport = "httpx"``
uses httpx's own transport and client instead.

Connections are opened by the backend's egress point (``egress.py``: the configured upstreams and nothing else),
kept alive and reused per origin, at most ``max_connections`` open at once. A kept connection
that turns out to be closed by the server before it answered is replaced once by a new one. A response closed
before its end (a cancelled run) closes its connection, so the upstream sees the client go and stops.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx

from ...egress import Egress, Refused, url_origin

_READ = 64 * 1024
Origin = tuple[str, str, int]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int, egress: Egress) -> None:
        self._egress = egress  # opens every connection, after its policy allowed it
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots = asyncio.BoundedSemaphore(max_connections)
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("connect")
        message = _head(request) + b"\r\n" + request.content
        return await self.exchange(_origin(request.url), message, timeout, head=request.method == "HEAD")

    async def exchange(
        self, origin: Origin, message: bytes, timeout: float | None, head: bool = False
    ) -> httpx.Response:
        """Send ``message`` (a whole request: line, headers, body) to ``origin``; the response, its body to
        be read. ``head``: a HEAD request, whose response has no body."""
        await self._slots.acquire()
        connection: _Connection | None = None
        try:
            reused = connection = self._idle_connection(origin)
            connection = connection or await self._connect(origin, timeout)
            try:
                status, headers = await _exchange(connection, message)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                if reused is None:
                    raise
                connection.close()
                connection = await self._connect(origin, timeout)  # the server had closed the kept connection
                status, headers = await _exchange(connection, message)
        except BaseException:  # cancelled too: a request given up on closes its connection
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        body = _Body(connection, headers, self, origin, head or status in (204, 304))
        return httpx.Response(status, headers=headers, stream=body)

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            self._ssl = self._ssl or ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._egress.open_stream(host, port, context, _READ)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {timeout:g} s") from None
        except Refused as refused:
            raise httpx.ConnectError(refused.reason) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        return _Connection(reader, writer)

    def release(self, origin: Origin, connection: _Connection, reusable: bool) -> None:
        self._slots.release()
        if reusable and connection.usable():
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()


def request_head(method: str, url: httpx.URL, headers: dict[str, str]) -> tuple[Origin, bytes]:
    """For ``exchange``: the origin, and the request line and headers (with Host, without Content-Length)
    of requests to ``url``, each line ended; built once per upstream instead of an httpx.Request per call."""
    request = httpx.Request(method, url, headers=headers)
    request.headers.pop("Content-Length", None)  # httpx says 0 for a request built without a body
    return _origin(url), _head(request)


def _origin(url: httpx.URL) -> Origin:
    return url.scheme, *url_origin(url)


def _head(request: httpx.Request) -> bytes:
    """The request line and header lines, each ended with CRLF (the blank line not included)."""
    lines = [request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n"


async def _exchange(connection: _Connection, message: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    try:
        connection.writer.write(message)
        reader = connection.reader
        while True:
            status_line = await reader.readline()
            if not status_line:
                raise httpx.RemoteProtocolError("the server closed the connection without answering")
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
            status = int(parts[1])
            headers: list[tuple[bytes, bytes]] = []
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                headers.append((name.strip(), value.strip()))
            if not 100 <= status < 200:
                return status, headers
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class _Body(httpx.AsyncByteStream):
    def __init__(
        self,
        connection: _Connection,
        headers: list[tuple[bytes, bytes]],
        pool: LeanTransport,
        origin: Origin,
        empty: bool,
    ) -> None:
        self._connection, self._pool, self._origin = connection, pool, origin
        encoding = (_header(headers, b"transfer-encoding") or b"").lower()
        length = _header(headers, b"content-length")
        self._chunked = b"chunked" in encoding
        self._length: int | None = 0 if empty else (int(length) if length is not None and not self._chunked else None)
        self._keep = (_header(headers, b"connection") or b"").lower() != b"close" and (
            self._chunked or self._length is not None
        )
        self._complete = False
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        try:
            if self._chunked:
                decoder = _Dechunker()
                while not decoder.finished:
                    data = await reader.read(_READ)
                    if not data:
                        raise httpx.RemoteProtocolError("peer closed the connection in the middle of the body")
                    payload = decoder.feed(data)
                    if payload:
                        yield payload
            elif self._length is not None:
                remaining = self._length
                while remaining > 0:
                    data = await reader.read(min(remaining, _READ))
                    if not data:
                        raise httpx.RemoteProtocolError("peer closed the connection in the middle of the body")
                    remaining -= len(data)
                    yield data
            else:  # the body runs to the end of the connection
                while data := await reader.read(_READ):
                    yield data
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None
        self._complete = True

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._origin, self._connection, self._complete and self._keep)


class _Dechunker:
    """Strips ``Transfer-Encoding: chunked`` framing from a buffer at a time."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._skip = 0  # the CRLF after a chunk's data
        self._trailers = False  # after the last chunk: trailer lines, then an empty line
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        size_of = len(buffer)
        out: list[bytes] = []
        at = 0
        while at < size_of and not self.finished:
            if self._remaining or self._skip:  # the rest of a chunk that began in an earlier buffer
                take = min(self._remaining, size_of - at)
                if take:
                    out.append(buffer[at : at + take])
                    at += take
                    self._remaining -= take
                    if not self._remaining:
                        self._skip = 2
                    continue
                take = min(self._skip, size_of - at)
                at += take
                self._skip -= take
                continue
            end = buffer.find(b"\r\n", at)
            if end < 0:
                break
            line, at = buffer[at:end], end + 2
            if self._trailers:
                self.finished = not line  # the empty line ends the message; other lines are trailers
                continue
            try:
                size = int(line, 16)  # the usual size line, inline: this loop runs once per upstream chunk
            except ValueError:
                size = _chunk_size(line)
            if not size:
                self._trailers = True
                continue
            stop = at + size
            if stop + 2 <= size_of:  # the whole chunk is here: one step
                out.append(buffer[at:stop])
                at = stop + 2
            else:
                self._remaining = size
        self._buffer = buffer[at:] if not self.finished else b""
        return out[0] if len(out) == 1 else b"".join(out)


def _chunk_size(line: bytes) -> int:
    try:
        return int(line, 16)
    except ValueError:
        pass
    try:
        return int(line.split(b";", 1)[0].strip(), 16)  # with chunk extensions
    except ValueError:
        raise httpx.RemoteProtocolError(f"bad chunk size line {line[:20]!r}") from None
