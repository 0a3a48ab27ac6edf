"""A server that is shutting down ends every run it has and starts none: uvicorn waits for their responses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from inprocess import create, scripted_service
from live import free_port
from openinteractions.api.app import create_app
from openinteractions.api.protocol import HttpProtocol
from openinteractions.cli import ApiServer
from openinteractions.config import Settings
from openinteractions.engine.quota import Usage
from openinteractions.engine.run import Run
from openinteractions.errors import ApiError
from openinteractions.events.log import DONE

HANG = json.dumps({"script": [{"hang": True}]})


def test_new_runs_are_refused_with_503(tmp_path: Path) -> None:
    """503 is what both SDKs retry: a client of a server being restarted gets through once it is back."""

    async def main() -> None:
        service = scripted_service(tmp_path)
        await service.start()
        await service.stop_runs()
        with pytest.raises(ApiError) as refused:
            await create(service, "hi")
        await service.stop()
        assert (refused.value.http_status, refused.value.status) == (503, "UNAVAILABLE")

    asyncio.run(main())


def test_a_run_cancelled_before_it_started_still_ends(tmp_path: Path) -> None:
    """A create handled in the loop pass where shutdown begins: its task is cancelled before it runs a line,
    and waiting for it must not hang the server's exit."""

    async def main() -> None:
        service = scripted_service(tmp_path)
        await service.start()
        run = await create(service, HANG)
        stream = service.creation_stream(run)  # as the create handler does, before it yields to the loop
        async with asyncio.timeout(5):  # not wait_for: its own task would let the run start first
            await service.stop_runs()
        assert run.task is not None and run.task.cancelled()  # not a line of it ran
        assert run.finished.is_set()
        assert [chunk async for chunk in stream] == [DONE]  # its log was dropped meanwhile
        await service.stop()

    asyncio.run(main())


def test_a_create_that_was_waiting_on_the_store_is_refused(tmp_path: Path) -> None:
    """A create reads the store (its chain, its key's usage) before its run starts: shutdown may begin
    meanwhile, after the create's first look at it. The create is parked in its quota check, the last read
    before the launch, so that shutdown provably begins between the two."""

    async def main() -> tuple[Run | BaseException, int]:
        service = scripted_service(tmp_path)
        await service.start()
        usage = service._counts.get
        parked, release = asyncio.Event(), asyncio.Event()

        async def parked_usage(owner: str, now: float) -> Usage:
            parked.set()
            await release.wait()
            return await usage(owner, now)

        service._counts.get = parked_usage  # type: ignore[method-assign]
        creating = asyncio.create_task(create(service, HANG))
        async with asyncio.timeout(5):
            await parked.wait()
        await service.stop_runs()
        release.set()
        async with asyncio.timeout(5):
            (outcome,) = await asyncio.gather(creating, return_exceptions=True)
        launched = len(service.runs)
        await service.stop()  # before any assert: a launched run would keep the store's thread alive
        return outcome, launched

    outcome, launched = asyncio.run(main())
    assert isinstance(outcome, ApiError) and outcome.http_status == 503, outcome
    assert launched == 0


def _app(tmp_path: Path) -> Any:
    settings = Settings(
        models={"m": {"backend": "scripted", "inline": True}}, store={"data_dir": tmp_path}, signing_key="k" * 32
    )
    return create_app(settings, tmp_path)


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_a_create_whose_run_shutdown_cancelled_before_it_started_gets_503(tmp_path: Path, stream: bool) -> None:
    """Shutdown begins in the loop pass right after a create launched its run: the run is cancelled before it
    runs a line, so nothing is logged or stored. The create used to answer 500 (a resource rendered from no
    events) or, streamed, a bare [DONE]; it is refused like a create that came a moment later."""
    app = _app(tmp_path)
    service = app.state.service
    launch = service._launch

    def launch_as_shutdown_begins(*args: object) -> Run:
        run = launch(*args)
        service.begin_shutdown()  # what stop_runs does first, in the same pass
        return run

    service._launch = launch_as_shutdown_begins

    async def main() -> httpx.Response:
        await service.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            body = {"model": "m", "input": HANG, "stream": stream}
            response = await asyncio.wait_for(http.post("/v1beta/interactions", json=body), 5)
        await service.stop()
        return response

    response = asyncio.run(main())
    assert response.status_code == 503, response.text
    assert response.json()["error"]["status"] == "UNAVAILABLE"


def test_a_request_already_sent_on_an_idle_kept_alive_connection_is_answered(tmp_path: Path) -> None:
    """A client reuses its kept-alive connection just as shutdown begins: its request is in the server's
    socket buffer, not yet read. The server used to close idle connections at once, which reset this one
    and the request got no answer at all; now it is read and answered (here 503, a create), and the
    answer says ``connection: close`` so that the client sends nothing more on it."""
    app = _app(tmp_path)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=HttpProtocol, log_level="warning")
    server = ApiServer(config, app.state.service)

    async def main() -> bytes:
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup()  # listening, as serve() would be, without taking over the signals
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert b"ok" in await reader.readexactly(len(b'{"status":"ok"}'))
        body = json.dumps({"model": "m", "input": "hi"}).encode()
        head = b"POST /v1beta/interactions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)  # sent now, not read yet
        await asyncio.wait_for(server.shutdown(), 10)  # begins in this same pass
        try:
            return await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            return b"(reset)"
        finally:
            writer.close()

    answer = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"connection: close" in answer.lower()
    assert b'"UNAVAILABLE"' in answer
