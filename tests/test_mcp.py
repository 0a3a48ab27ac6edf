"""The mcp_server tool end to end through google-genai: a FastMCP server this test starts on loopback (streamable
HTTP, in a thread), the scripted model and the embedded llama.cpp model calling its tools, allowed_tools, the
SSRF policy (loopback refused unless allow-listed), headers that reach the MCP server and nowhere else, and a
dead MCP server as an error step."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from google import genai
from mcp.server.fastmcp import FastMCP
from starlette.types import ASGIApp, Receive, Scope, Send

import netguard
from conftest import scripted_model
from live import LiveServer, free_port
from protocol import check_stream

MODEL = "gemini-3-flash-preview"
SECRET = "Bearer mcp-credential-7f3a"


class Demo:
    """The MCP server: two tools, the calls they got and the Authorization headers its requests carried."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.authorizations: list[str] = []
        self.mcp = FastMCP("demo", stateless_http=True, json_response=True)

        @self.mcp.tool()
        def add(a: int, b: int) -> str:
            """Add two integers."""
            self.calls.append("add")
            return f"the sum is {a + b}"

        @self.mcp.tool()
        def wipe_disk() -> str:
            """A tool no request allows."""
            self.calls.append("wipe_disk")
            return "wiped"

    def app(self) -> ASGIApp:
        inner = self.mcp.streamable_http_app()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                self.authorizations.append(headers.get(b"authorization", b"").decode())
            await inner(scope, receive, send)

        return app


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Demo, str]]:
    server = Demo()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(server.app(), log_level="warning", lifespan="on"))
    started = threading.Event()
    original = uv.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets)
        started.set()

    uv.startup = startup  # type: ignore[method-assign]
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert started.wait(30)
    yield server, f"http://127.0.0.1:{port}/mcp"
    uv.should_exit = True
    thread.join(10)


def live(workdir: Path, mcp: dict[str, Any], models: dict[str, Any] | None = None, rounds: int = 8) -> LiveServer:
    log = workdir / "netguard.log"
    sections: dict[str, dict[str, Any]] = {"tools": {"max_rounds": rounds}, "tools.mcp_server": mcp, **(models or {})}
    server = LiveServer(workdir, sections, env=netguard.server_env(log))
    server.guard_log = log  # type: ignore[attr-defined]
    return server.start()


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("mcp")
    models = {f"models.{MODEL}": scripted_model(record=workdir / "requests.jsonl")}
    server = live(workdir, {"allow_networks": ["127.0.0.1/32"], "timeout_seconds": 10}, models)
    yield server
    server.stop()
    netguard.no_packets_left(server.guard_log)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = live(tmp_path_factory.mktemp("strict"), {}, {f"models.{MODEL}": scripted_model()})
    yield server
    server.stop()
    netguard.no_packets_left(server.guard_log)  # type: ignore[attr-defined]


def client_for(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def streamed(server: LiveServer, **body: Any) -> dict[str, Any]:
    client = client_for(server)  # held: a client that is collected closes its connections
    events = client.interactions.create(model=MODEL, stream=True, **body)
    return check_stream([e.model_dump(mode="json", exclude_none=True, by_alias=True) for e in events])


def rounds(*per_round: list[dict[str, Any]]) -> str:
    return json.dumps({"rounds": list(per_round)})


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"call": {"name": name, "arguments": arguments}}


def mcp_tool(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "mcp_server", "name": "demo", "url": url, **fields}


def recorded(server: LiveServer) -> list[dict[str, Any]]:
    path = server.workdir / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_model_calls_an_mcp_tool_and_its_result_reaches_the_next_round(
    allowed: LiveServer, demo: tuple[Demo, str]
) -> None:
    server, url = demo
    script = rounds([call("mcp__demo__add", a=2, b=3)], [{"text": "Five."}])
    result = streamed(allowed, input=script, tools=[mcp_tool(url, allowed_tools=[{"tools": ["add"]}])])
    assert result["status"] == "completed"
    assert [s["type"] for s in result["steps"]] == ["mcp_server_tool_call", "mcp_server_tool_result", "model_output"]
    call_step, result_step, _ = result["steps"]
    assert call_step["start"]["name"] == "add" and call_step["start"]["server_name"] == "demo"
    assert call_step["deltas"] == [
        {"type": "mcp_server_tool_call", "name": "add", "server_name": "demo", "arguments": {"a": 2, "b": 3}}
    ]
    assert result_step["start"]["call_id"] == call_step["start"]["id"]
    assert result_step["deltas"][0]["result"] == [{"type": "text", "text": "the sum is 5"}]
    assert result_step["deltas"][0]["is_error"] is False
    second = recorded(allowed)[-1]  # what the model was given in the round after the call
    assert [f["name"] for f in second["functions"]] == ["mcp__demo__add"]  # allowed_tools: not wipe_disk
    assert second["history"][-1]["type"] == "mcp_server_tool_result"
    assert second["history"][-1]["result"] == [{"type": "text", "text": "the sum is 5"}]
    assert server.calls.count("add") >= 1 and "wipe_disk" not in server.calls


def test_a_tool_outside_allowed_tools_is_never_offered_nor_run(allowed: LiveServer, demo: tuple[Demo, str]) -> None:
    server, url = demo
    tool = mcp_tool(url, allowed_tools=[{"mode": "none", "tools": ["wipe_disk"]}])
    result = streamed(allowed, input=rounds([call("mcp__demo__wipe_disk")]), tools=[tool])
    offered = [f["name"] for f in recorded(allowed)[-1]["functions"]]
    assert offered == ["mcp__demo__add"]
    # not one of the server's tools: the call is the client's to answer, and the MCP server never ran it
    assert result["status"] == "requires_action" and result["steps"][-1]["type"] == "function_call"
    assert "wipe_disk" not in server.calls


def test_headers_reach_the_mcp_server_and_are_never_echoed_stored_or_logged(
    allowed: LiveServer, demo: tuple[Demo, str]
) -> None:
    server, url = demo
    client = client_for(allowed)
    tool = mcp_tool(url, headers={"Authorization": SECRET})
    done = client.interactions.create(model=MODEL, input=rounds([call("mcp__demo__add", a=1, b=1)], [{"text": "2"}]),
                                      tools=[tool])  # fmt: skip
    assert done.status == "completed"
    assert SECRET in server.authorizations  # sent to the MCP server
    got = client.interactions.get(done.id).model_dump(mode="json", by_alias=True)
    assert got["tools"][0]["headers"] == {"Authorization": "[redacted]"}
    assert SECRET not in json.dumps(got)
    database = b"".join(p.read_bytes() for p in allowed.data_dir.glob("openinteractions.db*"))
    assert SECRET.encode() not in database
    assert not any(SECRET in line for line in allowed.log)


def test_a_dead_mcp_server_is_an_error_step_not_a_hang(allowed: LiveServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    result = streamed(allowed, input=rounds([{"text": "No tools today."}]), tools=[mcp_tool(dead)])
    assert result["status"] == "completed"
    call_step, result_step, answer = result["steps"]
    assert call_step["type"] == "mcp_server_tool_call" and call_step["start"]["name"] == "tools/list"
    delta = result_step["deltas"][0]
    assert delta["is_error"] is True and dead in delta["result"]["error"]
    assert answer["type"] == "model_output"
    assert recorded(allowed)[-1]["history"][-1]["type"] == "mcp_server_tool_result"  # the model is told


def test_a_loopback_mcp_server_is_refused_unless_allow_listed(strict: LiveServer, demo: tuple[Demo, str]) -> None:
    server, url = demo
    before = len(server.authorizations)
    result = streamed(strict, input=rounds([{"text": "ok"}]), tools=[mcp_tool(url)])
    error = result["steps"][1]["deltas"][0]
    assert error["is_error"] is True and "loopback" in error["result"]["error"]
    refused = [a for a in netguard.attempts(strict.guard_log) if a["purpose"] == "mcp_server"]  # type: ignore[attr-defined]
    assert refused and all(a["outcome"] == "refused" for a in refused)
    assert len(server.authorizations) == before  # not one request reached it


def test_embedded_model_forced_to_call_an_mcp_tool(
    tmp_path_factory: pytest.TempPathFactory, demo: tuple[Demo, str]
) -> None:
    server, url = demo
    # tool_choice 'any' forces a call every round: two rounds, then budget_exceeded
    embedded = live(tmp_path_factory.mktemp("embedded"), {"allow_networks": ["127.0.0.1/32"]}, rounds=2)
    try:
        result = streamed(
            embedded,
            input="What is 2 plus 3?",
            tools=[mcp_tool(url, allowed_tools=[{"tools": ["add"]}])],
            generation_config={"tool_choice": "any", "seed": 3, "max_output_tokens": 48},
        )
    finally:
        embedded.stop()
    calls = [s["start"] | s["deltas"][0] for s in result["steps"] if s["type"] == "mcp_server_tool_call"]
    results = [s["start"] | s["deltas"][0] for s in result["steps"] if s["type"] == "mcp_server_tool_result"]
    assert calls and {(c["server_name"], c["name"]) for c in calls} == {("demo", "add")}
    assert results and [r["call_id"] for r in results] == [c["id"] for c in calls][: len(results)]
    assert all(set(c["arguments"]) <= {"a", "b"} for c in calls)
    assert "add" in server.calls or all(r["is_error"] for r in results)  # a 135M model's arguments may not fit
    netguard.no_packets_left(embedded.guard_log)  # type: ignore[attr-defined]
