"""The ``openai`` backend's lean HTTP/1.1 transport for httpx, against a raw HTTP server on loopback."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from live import free_port
from openinteractions.backends.base import BackendError, GenerationRequest, TextChunk
from openinteractions.backends.openai.backend import OpenAIBackend
from openinteractions.backends.openai.options import parse_options
from openinteractions.backends.openai.wire import LeanTransport, _Dechunker
from openinteractions.egress import Egress, Refused
from openinteractions.schema.steps import Step

Handler = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LoopbackOnly:
    def permit(self, host: str, port: int, addresses: Sequence[str]) -> None:
        if addresses != ["127.0.0.1"]:
            raise Refused(f"{host} is not 127.0.0.1")


def lean(max_connections: int) -> LeanTransport:
    return LeanTransport(max_connections, Egress("upstream", LoopbackOnly()))


def test_dechunking_does_not_depend_on_where_buffers_end() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        parts = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(rng.randrange(0, 8))]
        wire = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";ext=1" if rng.random() < 0.2 else b"", p) for p in parts)
        wire += b"0\r\n" + (b"X-Trailer: 1\r\n" if rng.random() < 0.3 else b"") + b"\r\n"
        cuts = sorted(rng.sample(range(len(wire) + 1), min(len(wire) + 1, rng.randrange(0, 6))))
        decoder, got = _Dechunker(), b""
        for piece in (wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)):
            assert not (piece and decoder.finished)
            got += decoder.feed(piece)
        assert decoder.finished and got == b"".join(parts)


def test_a_bad_chunk_size_is_a_protocol_error() -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _Dechunker().feed(b"zz\r\nhello\r\n")


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    return head + await reader.readexactly(length)


def chunked(*parts: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n" + body


class Server:
    """Numbers its connections and hands each to ``handler``; ``closed`` is set when the client closes one
    that the handler left open."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.count = 0
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.count += 1
        try:
            await self.handler(self.count, reader, writer)
            if not writer.is_closing():
                await reader.read()  # until the client closes its end
                self.closed.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed.set()
        finally:
            writer.close()

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def fetch(client: httpx.AsyncClient, port: int) -> tuple[int, bytes]:
    response = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=b'{"a": 1}')
    return response.status_code, response.content


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_connections_are_kept_alive_and_reused() -> None:
    async def handler(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and request.endswith(b'{"a": 1}')
            writer.write(chunked(b"data: one\n\n", b"data: two\n\n"))

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        async with httpx.AsyncClient(transport=lean(4)) as client:
            for _ in range(3):
                assert await fetch(client, port) == (200, b"data: one\n\ndata: two\n\n")
        assert server.count == 1
        await asyncio.wait_for(server.closed.wait(), 5)  # closing the client closed the kept connection
        server.stop()

    run(go())


def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    async def handler(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked(b"data: %d\n\n" % number))
        await writer.drain()
        if number == 1:  # the next request on this connection finds it closed, without an answer
            await read_request(reader)
            writer.close()

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        async with httpx.AsyncClient(transport=lean(4)) as client:
            assert await fetch(client, port) == (200, b"data: 1\n\n")
            assert await fetch(client, port) == (200, b"data: 2\n\n")
        assert server.count == 2
        server.stop()

    run(go())


def test_content_length_and_read_to_close_bodies() -> None:
    async def handler(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if number == 1:
            writer.write(b'HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\n\r\n{"error":"x"}')
            await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        writer.close()  # the end of the body

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        transport = lean(4)
        async with httpx.AsyncClient(transport=transport) as client:
            assert await fetch(client, port) == (400, b'{"error":"x"}')
            assert await fetch(client, port) == (200, b"until the end")
            assert not any(transport._idle.values())  # "connection: close" is not kept
        assert server.count == 1
        server.stop()

    run(go())


def test_a_body_cut_mid_chunk_is_a_protocol_error() -> None:
    async def handler(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked(b"data: whole\n\n")[:-20])
        writer.close()  # the peer dies partway

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        async with httpx.AsyncClient(transport=lean(4)) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(client, port)
        server.stop()

    run(go())


def test_closing_a_response_early_closes_its_connection() -> None:
    async def handler(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"5\r\nfirst\r\n")
        await writer.drain()

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        transport = lean(1)
        client = httpx.AsyncClient(transport=transport)
        async with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", content=b"{}") as response:
            async for data in response.aiter_raw():
                assert data == b"first"
                break
        await asyncio.wait_for(server.closed.wait(), 5)  # the server saw the client close the connection
        # ...and the one connection allowed is free again.
        await asyncio.wait_for(transport._slots.acquire(), 1)
        server.stop()

    run(go())


def test_connection_refused_is_a_connect_error() -> None:
    async def go() -> None:
        async with httpx.AsyncClient(transport=lean(1)) as client:
            await fetch(client, free_port())

    with pytest.raises(httpx.ConnectError):
        run(go())


def test_giving_up_before_the_answer_closes_the_connection() -> None:
    async def handler(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and never answer

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        transport = lean(1)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await fetch(client, port)
            await asyncio.wait_for(server.closed.wait(), 5)
            await asyncio.wait_for(transport._slots.acquire(), 1)
        server.stop()

    run(go())


def test_a_compressed_stream_is_decoded_and_a_plain_one_read_directly() -> None:
    """The backend reads the lean transport's body directly only when it has no content-encoding."""
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    packer = zlib.compressobj(wbits=31)  # gzip
    packed = packer.compress(chunk) + packer.flush()

    async def handler(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answers = [
            chunked(packed[:10], packed[10:]).replace(b"content-type:", b"content-encoding: gzip\r\ncontent-type:"),
            chunked(chunk),
        ]
        while answers and await read_request(reader) is not None:
            writer.write(answers.pop(0))

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        backend = OpenAIBackend(parse_options({"base_urls": [f"http://127.0.0.1:{port}/v1"], "max_connections": 1}))
        user = {"type": "user_input", "content": [{"type": "text", "text": "x"}]}
        history = TypeAdapter(list[Step]).validate_python([user])
        try:
            for _ in range(2):
                events = [e async for e in backend.generate(GenerationRequest(model="m", history=history))]
                assert [e for e in events if isinstance(e, TextChunk)] == [TextChunk("hi")]
        finally:
            await backend.aclose()
            server.stop()

    asyncio.run(go())


def test_an_upstream_that_never_answers_times_out_and_one_that_never_ends_its_body_is_let_go() -> None:
    """The first-byte deadline covers the request and the response head; after [DONE], waiting for the end
    of the body is bounded too (the connection is then dropped, not reused)."""
    done = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'

    async def handler(count: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if count == 2:  # the head and [DONE], but never the last chunk
            writer.write(chunked(done).removesuffix(b"0\r\n\r\n"))
        await reader.read()

    async def go() -> None:
        server = Server(handler)
        port = await server.start()
        options = {"base_urls": [f"http://127.0.0.1:{port}/v1"], "first_byte_timeout": 0.05}
        backend = OpenAIBackend(parse_options(options))
        user = {"type": "user_input", "content": [{"type": "text", "text": "x"}]}
        request = GenerationRequest(model="m", history=TypeAdapter(list[Step]).validate_python([user]))
        try:
            with pytest.raises(BackendError, match=r"did not start answering within 0\.05 s"):
                [e async for e in backend.generate(request)]
            await asyncio.wait_for(server.closed.wait(), 5)
            server.closed.clear()
            events = [e async for e in backend.generate(request)]
            assert [e for e in events if isinstance(e, TextChunk)] == [TextChunk("hi")]
            await asyncio.wait_for(server.closed.wait(), 5)
        finally:
            await backend.aclose()
            server.stop()

    asyncio.run(go())
