"""The transport side of the ``openai`` backend, in process, against upstreams simulated by httpx's MockTransport:
failover before the first event, errors after it, status mapping and redaction, timeouts, balancing, health
checks, and closing the upstream request when a run is cancelled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from openinteractions.backends.base import (
    BackendError,
    CallArguments,
    CallStart,
    Finish,
    GenerationRequest,
    ModelEvent,
    Resume,
    TextChunk,
    ThoughtChunk,
    UsageReport,
)
from openinteractions.backends.openai.backend import OpenAIBackend
from openinteractions.backends.openai.options import parse_options
from openinteractions.schema.steps import Step

KEY = "sk-test-9f8e7d6c5b4a39281706"
_steps = TypeAdapter(list[Step])


def sse(*texts: str, finish: bool = True) -> list[bytes]:
    chunks = [
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": t}}]}).encode() + b"\n\n" for t in texts
    ]
    if finish:
        chunks.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    return chunks


class Body(httpx.AsyncByteStream):
    """A response body that can stop partway: end, hang until released, or break like a dead peer."""

    def __init__(self, chunks: list[bytes], then: str = "end") -> None:
        self.chunks, self.then = chunks, then
        self.closed = False
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for data in self.chunks:
            yield data
        if self.then == "hang":
            await self.release.wait()
        elif self.then == "break":
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    async def aclose(self) -> None:
        self.closed = True


class Upstreams:
    """Per-host behaviour, and a record of every request: (host, path, authorization)."""

    def __init__(self, **behaviours: Callable[[httpx.Request], Any]) -> None:
        self.behaviours = behaviours
        self.seen: list[tuple[str, str, str | None]] = []
        self.bodies: list[Body] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.seen.append((host, request.url.path, request.headers.get("authorization")))
        result = self.behaviours[host](request)
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, Body):
            self.bodies.append(result)
            return httpx.Response(200, stream=result, headers={"content-type": "text/event-stream"})
        return result

    def chat_hosts(self) -> list[str]:
        return [host for host, path, _ in self.seen if path.endswith("/chat/completions")]


def refuse(request: httpx.Request) -> Any:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def text(request: httpx.Request) -> Body:
    return Body(sse("Hello", " world"))


def backend(upstreams: Upstreams, hosts: list[str], **options: Any) -> OpenAIBackend:
    parsed = parse_options({"base_urls": [f"http://{h}/v1" for h in hosts], "api_key": KEY, **options})
    return OpenAIBackend(parsed, transport=httpx.MockTransport(upstreams))


def request() -> GenerationRequest:
    history = _steps.validate_python([{"type": "user_input", "content": [{"type": "text", "text": "hi"}]}])
    return GenerationRequest(model="m", history=history)


async def collect(b: OpenAIBackend) -> list[ModelEvent]:
    return [event async for event in b.generate(request())]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_request_fails_over_to_the_next_upstream_before_its_first_byte() -> None:
    for failure in (refuse, lambda r: httpx.Response(503, json={"error": {"message": "overloaded"}})):
        upstreams = Upstreams(a=failure, b=text)

        async def go(upstreams: Upstreams) -> None:
            b = backend(upstreams, ["a", "b"])
            events = await collect(b)
            assert [e for e in events if isinstance(e, TextChunk)] == [TextChunk("Hello"), TextChunk(" world")]
            assert not b.pool.upstreams[0].healthy and b.pool.upstreams[1].healthy
            assert [u.base_url for u in b.pool.candidates()] == ["http://b/v1", "http://a/v1"]
            await b.aclose()

        run(go(upstreams))
        assert upstreams.chat_hosts() == ["a", "b"]


def test_a_stream_that_ends_before_saying_anything_is_retried() -> None:
    upstreams = Upstreams(a=lambda r: Body([b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n']), b=text)
    events = run(collect(backend(upstreams, ["a", "b"])))
    assert events[-1] == Finish("stop") and upstreams.chat_hosts() == ["a", "b"]


def test_every_upstream_failing_reports_each_failure() -> None:
    upstreams = Upstreams(a=refuse, b=lambda r: httpx.Response(502, text="Bad gateway"))
    with pytest.raises(BackendError) as caught:
        run(collect(backend(upstreams, ["a", "b"])))
    assert caught.value.code == "unavailable"
    assert "all 2 upstreams failed" in caught.value.message
    assert "http://a/v1 is unreachable: ConnectError" in caught.value.message
    assert "http://b/v1 answered HTTP 502: Bad gateway" in caught.value.message


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_argument"), (401, "permission_denied"), (403, "permission_denied"), (404, "not_found")],
)
def test_a_client_error_is_not_retried_and_keeps_the_upstream_message(status: int, code: str) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    upstreams = Upstreams(a=lambda r: httpx.Response(status, json=body), b=text)
    with pytest.raises(BackendError) as caught:
        run(collect(backend(upstreams, ["a", "b"])))
    assert caught.value.code == code
    assert upstreams.chat_hosts() == ["a"]
    assert "Incorrect API key provided: [redacted]" in caught.value.message
    assert KEY not in caught.value.message and "9f8e7d6c" not in caught.value.message


def test_rate_limits_go_to_another_upstream_and_are_reported_as_exhausted() -> None:
    limited = lambda r: httpx.Response(429, json={"error": "too many requests"})  # noqa: E731 (Ollama's shape)
    run(collect(backend(Upstreams(a=limited, b=text), ["a", "b"])))
    with pytest.raises(BackendError) as caught:
        run(collect(backend(Upstreams(a=limited), ["a"])))
    assert caught.value.code == "resource_exhausted" and "too many requests" in caught.value.message


def test_a_server_that_ignores_stream_is_read_whole() -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    upstreams = Upstreams(a=lambda r: httpx.Response(200, json=completion))
    events = run(collect(backend(upstreams, ["a"])))
    assert events == [
        CallStart("f", "c1"),
        CallArguments('{"x": 1}'),
        CallStart("g", "c2"),
        CallArguments("{}"),
        UsageReport(input_tokens=3, output_tokens=4),
        Finish("stop"),
    ]


def test_the_key_is_sent_as_a_bearer_token() -> None:
    upstreams = Upstreams(a=text)
    run(collect(backend(upstreams, ["a"])))
    assert upstreams.seen == [("a", "/v1/chat/completions", f"Bearer {KEY}")]


def test_dying_mid_stream_is_an_error_not_a_retry() -> None:
    upstreams = Upstreams(a=lambda r: Body(sse("Hel", finish=False), then="break"), b=text)

    async def go() -> list[ModelEvent]:
        events: list[ModelEvent] = []
        with pytest.raises(BackendError) as caught:
            async for event in backend(upstreams, ["a", "b"]).generate(request()):
                events.append(event)
        assert caught.value.code == "unavailable" and "broke the stream" in caught.value.message
        return events

    assert run(go()) == [TextChunk("Hel")]
    assert upstreams.chat_hosts() == ["a"]


def test_an_eof_without_done_or_finish_is_an_error() -> None:
    upstreams = Upstreams(a=lambda r: Body(sse("Hel", finish=False)))
    with pytest.raises(BackendError, match="ended the stream before the answer was finished"):
        run(collect(backend(upstreams, ["a"])))


def test_first_byte_timeout_moves_on_and_idle_timeout_fails() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError

    upstreams = Upstreams(a=never, b=text)
    run(collect(backend(upstreams, ["a", "b"], first_byte_timeout=0.05)))
    assert upstreams.chat_hosts() == ["a", "b"]

    silent = Upstreams(a=lambda r: Body([], then="hang"))
    with pytest.raises(BackendError, match=r"did not start answering within 0\.05 s") as caught:
        run(collect(backend(silent, ["a"], first_byte_timeout=0.05)))
    assert caught.value.code == "gateway_timeout"

    stalled = Upstreams(a=lambda r: Body(sse("Hel", finish=False), then="hang"))
    with pytest.raises(BackendError, match=r"sent nothing for 0\.05 s") as caught:
        run(collect(backend(stalled, ["a"], idle_timeout=0.05)))
    assert caught.value.code == "gateway_timeout"


def test_cancelling_a_run_closes_the_upstream_request_at_once() -> None:
    upstreams = Upstreams(a=lambda r: Body(sse("Hel", finish=False), then="hang"))

    async def go() -> None:
        b = backend(upstreams, ["a"])
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in b.generate(request()):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        assert not upstreams.bodies[0].closed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert upstreams.bodies[0].closed
        assert b.pool.upstreams[0].in_flight == 0

    run(go())


def test_closing_the_generator_closes_the_upstream_request() -> None:
    upstreams = Upstreams(a=lambda r: Body(sse("Hel", finish=False), then="hang"))

    async def go() -> None:
        events = backend(upstreams, ["a"]).generate(request())
        assert await anext(events) == TextChunk("Hel")
        await events.aclose()  # type: ignore[attr-defined]
        assert upstreams.bodies[0].closed

    run(go())


def test_round_robin_spreads_requests_evenly() -> None:
    upstreams = Upstreams(a=text, b=text, c=text)

    async def go() -> None:
        b = backend(upstreams, ["a", "b", "c"])
        for _ in range(6):
            await collect(b)

    run(go())
    assert upstreams.chat_hosts() == ["a", "b", "c", "a", "b", "c"]


def test_least_busy_picks_the_upstream_with_fewest_requests_in_flight() -> None:
    held = Body(sse("Hel", finish=False), then="hang")
    upstreams = Upstreams(a=lambda r: held if not upstreams.bodies else Body(sse("x")), b=text)

    async def go() -> None:
        b = backend(upstreams, ["a", "b"], balancing="least_busy")
        long = b.generate(request())
        await anext(long)  # a is busy with this one
        for _ in range(3):
            await collect(b)
        await long.aclose()  # type: ignore[attr-defined]

    run(go())
    assert upstreams.chat_hosts() == ["a", "b", "b", "b"]


def test_health_checks_mark_upstreams_down_and_up() -> None:
    state = {"b": False}

    def b_models(request: httpx.Request) -> Any:
        if not state["b"]:
            return refuse(request)
        return httpx.Response(200, json={"data": []})

    upstreams = Upstreams(a=lambda r: httpx.Response(200, json={"data": []}), b=b_models)

    async def go() -> None:
        b = backend(upstreams, ["a", "b"])
        await b.pool.check_all()
        assert [u.healthy for u in b.pool.upstreams] == [True, False]
        state["b"] = True
        await b.pool.check_all()
        assert [u.healthy for u in b.pool.upstreams] == [True, True]

    run(go())
    assert ("a", "/v1/models", f"Bearer {KEY}") in upstreams.seen


def test_a_health_check_that_gets_no_answer_fails() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError

    async def go() -> None:
        b = backend(Upstreams(a=never, b=lambda r: httpx.Response(200, json={})), ["a", "b"], connect_timeout=0.05)
        await b.pool.check_all()
        assert [u.healthy for u in b.pool.upstreams] == [False, True]

    run(go())


def test_periodic_health_checks_run_in_the_background() -> None:
    checked = asyncio.Event()

    def models(request: httpx.Request) -> httpx.Response:
        checked.set()
        return httpx.Response(200, json={"data": []})

    upstreams = Upstreams(a=models, b=models)

    async def go() -> None:
        b = backend(upstreams, ["a", "b"], health_check_interval=3600)
        b.pool.start()
        await checked.wait()  # the first check runs at once
        await b.aclose()

    run(go())


def test_read_deadlines_count_only_the_reads() -> None:
    """One timer per stream stands in for a timeout around every read: it must time out the same reads."""
    from openinteractions.backends.openai.deadline import ReadDeadlines

    async def pieces(delays: list[float]) -> AsyncIterator[bytes]:
        for delay in delays:
            await asyncio.sleep(delay)
            yield b"x"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reads = ReadDeadlines(loop.time() + 1.0, 0.05)
        quick = pieces([0, 0.01, 0.01])
        for _ in range(3):
            await reads.next(quick)
            await asyncio.sleep(0.1)  # handling what was read takes longer than the idle timeout: not counted
        reads.close()

        reads = ReadDeadlines(loop.time() + 1.0, 0.05)
        slow = pieces([0, 0.3])
        await reads.next(slow)
        with pytest.raises(TimeoutError):
            await reads.next(slow)
        reads.close()

        reads = ReadDeadlines(loop.time() + 0.05, 10.0)
        with pytest.raises(TimeoutError):
            await reads.next(pieces([0.3]))
        reads.close()

        reads = ReadDeadlines(loop.time() + 10.0, 10.0)
        waiting = asyncio.create_task(reads.next(pieces([10.0])))
        await asyncio.sleep(0.01)
        waiting.cancel()  # a cancel from outside stays a cancel, not a timeout
        with pytest.raises(asyncio.CancelledError):
            await waiting
        reads.close()

    asyncio.run(scenario())


def test_a_continued_answer_is_answer_text_only() -> None:
    """Continuing a cut answer, the upstream's output is that answer's rest: a template that opens a think block
    in the prompt (think_tags "starts_open") opens none after the prefill, and reasoning is left out."""
    reasoning = b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}\n\n'
    upstreams = Upstreams(a=lambda r: Body([reasoning, *sse(" a time.")]))
    b = backend(upstreams, ["a"], think_tags="starts_open", continuation="continue_final_message")
    cut = request()
    cut.resume = Resume([], "model_output", "Once upon")
    events = run(_collect(b, cut))
    assert [e for e in events if isinstance(e, TextChunk | ThoughtChunk)] == [TextChunk(" a time.")]
    fresh = run(_collect(b, request()))
    assert [e for e in fresh if isinstance(e, TextChunk | ThoughtChunk)] == [
        ThoughtChunk("hmm"),
        ThoughtChunk(" a time."),
    ]


async def _collect(b: OpenAIBackend, req: GenerationRequest) -> list[ModelEvent]:
    return [event async for event in b.generate(req)]
