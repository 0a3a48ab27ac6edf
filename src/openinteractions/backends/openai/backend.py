"""The ``openai`` backend: any server that streams OpenAI chat completions (vLLM, SGLang, Ollama, llama.cpp's
server, llama-cpp-python's server, a hosted API).

``prepare`` maps the request to a chat-completion body (a BackendError there is a 400); ``generate`` sends it to
one upstream after another until one starts answering, and translates its stream. A failure before the first
event (connection refused, a 5xx or 429, no first byte in time, a stream that ended before saying anything) moves
on to the next upstream; after it, the run fails with the error. Closing the generator (a cancelled run, a
client gone) closes the upstream request at once: its connection is dropped, so the upstream stops generating.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

from ... import jsontext
from ...egress import Egress, OriginPolicy
from ..base import SAMPLING_CONFIG, BackendError, Capabilities, GenerationRequest, ModelEvent
from .deadline import ReadDeadlines
from .errors import Redactor, retryable_status, status_error, stream_error
from .options import OpenAIOptions, parse_options
from .pool import Upstream, UpstreamPool, probe_models
from .request import chat_body
from .sse import Message, SSEDecoder
from .translate import StreamFailure, StreamTranslator, ThinkMode, TruncatedStream, coalesce
from .wire import LeanTransport, Origin, request_head

logger = logging.getLogger(__name__)

_ERROR_BODY_LIMIT = 64 * 1024
_COMPLETION_LIMIT = 16 * 1024 * 1024
_DRAIN_SECONDS = 1.0  # after [DONE], how long to wait for the body's end before dropping the connection


class _Retry(Exception):
    """A failure before anything was emitted: another upstream may still serve the request."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(error.message)
        self.error = error


def capabilities_for(options: OpenAIOptions) -> Capabilities:
    config = set(SAMPLING_CONFIG)
    if options.supports_tools:
        config.add("tool_choice")
    if options.supports_reasoning:
        config.add("thinking_summaries")
        if options.reasoning_effort:
            config.add("thinking_level")
    return Capabilities(
        generation_config=frozenset(config),
        input_modalities=frozenset(options.input_modalities),
        function_calling=options.supports_tools,
        structured_output=options.supports_json_schema,
        continuation=options.continuation != "none",
        continuation_scope="text",
    )


class OpenAIBackend:
    def __init__(self, options: OpenAIOptions, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.options = options
        self.capabilities = capabilities_for(options)
        key = options.key()
        self._redact = Redactor(key)
        self._auth = {"authorization": f"Bearer {key}"} if key else {}
        self._headers = {**self._auth, "content-type": "application/json", "accept": "text/event-stream"}
        self._transport = transport
        self.egress = Egress("upstream", OriginPolicy(options.base_urls))  # the configured upstreams, nothing else
        self._lean: LeanTransport | None = None
        self._lean_heads: dict[str, tuple[Origin, bytes]] = {}  # per upstream: its origin and request head
        self._client: httpx.AsyncClient | None = None
        self._timeouts = {"connect": options.connect_timeout, "read": None, "write": None, "pool": None}
        self.pool = UpstreamPool(options.base_urls, options.balancing, options.health_check_interval, self._probe)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            options = self.options
            transport = self._transport
            if transport is None and options.http_transport == "lean":
                transport = self._lean = LeanTransport(options.max_connections, self.egress)
            limits = httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            )
            # Only the connect timeout is httpx's; first byte and idle are enforced around each read.
            timeout = httpx.Timeout(None, connect=options.connect_timeout)
            self._client = self.egress.client(transport, limits=limits, timeout=timeout)
        return self._client

    def _lean_head(self, upstream: Upstream) -> tuple[Origin, bytes]:
        head = self._lean_heads.get(upstream.base_url)
        if head is None:
            head = self._lean_heads[upstream.base_url] = request_head("POST", upstream.chat_url, self._headers)
        return head

    async def _probe(self, upstream: Upstream) -> bool:
        return await probe_models(self._http(), upstream, self._auth, self.options.connect_timeout)

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def prepare(self, request: GenerationRequest) -> bytes:
        body = chat_body(request, self.options)
        return jsontext.dumps_bytes(body)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[ModelEvent, None]:
        payload = request.plan if isinstance(request.plan, bytes) else self.prepare(request)
        answering = request.resume is not None and request.resume.open_step == "model_output"
        self.pool.start()
        failures: list[BackendError] = []
        for upstream in self.pool.candidates():
            upstream.in_flight += 1
            try:
                async with aclosing(self._stream(upstream, payload, answering)) as events:
                    async for event in events:
                        yield event
                self.pool.succeeded(upstream)
                return
            except _Retry as retry:
                self.pool.failed(upstream, retry.error.message)
                failures.append(retry.error)
            finally:
                upstream.in_flight -= 1
        if len(failures) == 1:
            raise failures[0]
        summary = "; ".join(f.message for f in failures)
        raise BackendError(f"all {len(failures)} upstreams failed: {summary}", failures[-1].code)

    async def _stream(self, upstream: Upstream, payload: bytes, answering: bool) -> AsyncGenerator[ModelEvent, None]:
        """One attempt. Raises _Retry for a failure before the first event, BackendError after it. ``answering``:
        the output continues a cut answer: no think block opens it, and reasoning the upstream does anyway is
        left out, so that the cut step goes on as one."""
        options, label = self.options, upstream.label
        client = self._http()
        # The first read may take until the first-byte deadline (queueing, prompt processing), counted from
        # here; later ones at most the idle timeout each.
        reads = ReadDeadlines(asyncio.get_running_loop().time() + options.first_byte_timeout, options.idle_timeout)
        try:
            try:
                if self._lean is not None:  # straight to the transport: no cookies, redirects or auth flows
                    origin, head = self._lean_head(upstream)
                    message = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(payload), payload)
                    response = await reads.opening(self._lean.exchange(origin, message, options.connect_timeout))
                else:
                    request = httpx.Request("POST", upstream.chat_url, content=payload, headers=self._headers,
                                            extensions={"timeout": self._timeouts})  # fmt: skip
                    response = await reads.opening(client.send(request, stream=True))
            except TimeoutError:
                raise _Retry(_no_first_byte(label, options.first_byte_timeout)) from None
            except httpx.TransportError as exc:
                error = BackendError(self._redact(f"{label} is unreachable: {_describe(exc)}"), "unavailable")
                raise _Retry(error) from None
        except BaseException:
            reads.close()
            raise
        emitted = False
        try:
            if response.status_code != 200:
                body = await _read_some(response, options.idle_timeout)
                error = status_error(response.status_code, body, label, self._redact)
                raise _Retry(error) if retryable_status(response.status_code) else error
            think: ThinkMode = "parse" if answering and options.think_tags == "starts_open" else options.think_tags
            translator = StreamTranslator(think, thoughts=not answering)
            if response.headers.get("content-type", "").startswith("application/json"):
                # A server that ignored "stream": the whole completion at once, read as one chunk.
                body = await _read_some(response, options.first_byte_timeout, _COMPLETION_LIMIT)
                try:
                    events = _whole(translator, body)
                except StreamFailure as failure:
                    raise stream_error(failure.payload, label, self._redact) from None
                for event in events:
                    yield event
                return
            decoder = SSEDecoder()
            reader = _body_reader(response, lean=self._lean is not None)
            started = done = ended = False
            while not (done or ended):
                try:
                    data = await reads.next(reader)
                    started = True
                    messages = decoder.feed(data)
                except StopAsyncIteration:
                    ended, messages = True, decoder.close()
                except TimeoutError:
                    if emitted:
                        silent = f"{label} sent nothing for {options.idle_timeout:g} s"
                        raise BackendError(silent, "gateway_timeout") from None
                    if started:
                        raise _Retry(BackendError(f"{label} stalled before answering", "gateway_timeout")) from None
                    raise _Retry(_no_first_byte(label, options.first_byte_timeout)) from None
                except httpx.TransportError as exc:
                    error = BackendError(self._redact(f"{label} broke the stream: {_describe(exc)}"), "unavailable")
                    if emitted:
                        raise error from None
                    raise _Retry(error) from None
                events, done, refusal = self._translate(messages, translator, label)
                for event in coalesce(events):
                    emitted = True
                    yield event
                if refusal is not None:
                    raise refusal
            try:
                tail = translator.finish(done)
            except TruncatedStream:
                error = BackendError(f"{label} ended the stream before the answer was finished", "unavailable")
                raise error if emitted else _Retry(error) from None
            for event in coalesce(tail):
                yield event
            if done:
                await _drain(reads, reader)
        finally:
            reads.close()
            await response.aclose()

    def _translate(
        self, messages: list[Message], translator: StreamTranslator, label: str
    ) -> tuple[list[ModelEvent], bool, BackendError | None]:
        """The events of one read's messages, whether [DONE] was among them, and the error that cut them
        short, if one did (the events before it still go out first)."""
        pending = messages
        done = False
        for at, (_, data) in enumerate(messages):
            if data == b"[DONE]":
                pending, done = messages[:at], True
                break
        events: list[ModelEvent] = []
        try:
            translator.messages(pending, events)
        except StreamFailure as failure:
            return events, False, stream_error(failure.payload, label, self._redact)
        except BackendError as error:
            return events, False, error
        return events, done, None


def _no_first_byte(label: str, seconds: float) -> BackendError:
    return BackendError(f"{label} did not start answering within {seconds:g} s", "gateway_timeout")


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _body_reader(response: httpx.Response, lean: bool) -> AsyncIterator[bytes]:
    """The body's pieces. The lean transport's own stream is read directly when there is nothing to decode:
    httpx's decoding and re-chunking layers cost more per read than what the read brings, at token pace."""
    if lean and response.headers.get("content-encoding", "identity") == "identity":
        return response.stream.__aiter__()  # type: ignore[union-attr]
    return response.aiter_bytes().__aiter__()


async def _read_some(response: httpx.Response, timeout: float, limit: int = _ERROR_BODY_LIMIT) -> bytes:
    """Up to ``limit`` bytes of the body, or what came within ``timeout`` seconds."""
    body = b""
    try:
        async with asyncio.timeout(timeout):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= limit:
                    break
    except (httpx.HTTPError, TimeoutError):
        pass
    return body[:limit]


def _whole(translator: StreamTranslator, body: bytes) -> list[ModelEvent]:
    """A non-streamed ``chat.completion``: its message is the delta of a single chunk."""
    try:
        completion = json.loads(body)
    except ValueError:
        raise BackendError("the upstream answered with JSON that does not parse", "unavailable") from None
    chunk = dict(completion) if isinstance(completion, dict) else {}
    chunk["choices"] = [
        {**choice, "delta": choice.get("message")} for choice in chunk.get("choices") or [] if isinstance(choice, dict)
    ]
    return translator.feed(chunk) + translator.finish()


async def _drain(reads: ReadDeadlines, reader: AsyncIterator[bytes]) -> None:
    """Read to the end of the body after [DONE], so that the connection goes back to the pool."""
    try:
        while True:
            await reads.next(reader, _DRAIN_SECONDS)
    except (StopAsyncIteration, TimeoutError, httpx.HTTPError):
        pass


def create(options: dict[str, Any], base_dir: Path) -> OpenAIBackend:
    return OpenAIBackend(parse_options(options))
