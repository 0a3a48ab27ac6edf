"""Server-side tools, end to end through google-genai: the tool loop, local search with citations, code
execution in the sandbox, url_context with SSRF refusals. The servers run in the suite's network namespace,
which has only loopback, and record every attempt of their egress point (tests/netguard): the tests check that
they connected nowhere but loopback and that each refusal happened, and was recorded, before connecting."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from google import genai
from google.genai._interactions import BadRequestError

import netguard
from live import FIXTURES, LiveServer
from pages import site
from protocol import check_stream

MODEL = "gemini-3-flash-preview"


def rounds(*per_round: list[dict[str, Any]]) -> str:
    return json.dumps({"rounds": list(per_round)})


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"call": {"name": name, "arguments": arguments}}


def guarded_server(workdir: Path, tools: dict[str, dict[str, Any]]) -> LiveServer:
    log = workdir / "netguard.log"
    sections = {f"models.{MODEL}": {"backend": "scripted", "inline": True, "script": FIXTURES / "seed.json"}}
    sections.update({f"tools.{name}": values for name, values in tools.items()})
    server = LiveServer(workdir, sections, env=netguard.server_env(log))
    server.guard_log = log  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="module")
def website() -> Iterator[str]:
    with site() as url:
        yield url


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = guarded_server(
        tmp_path_factory.mktemp("tools"),
        {
            "url_context": {"allow_networks": ["127.0.0.1/32"]},
            "code_execution": {"wall_seconds": 5, "cpu_seconds": 2, "memory_mb": 256, "max_output_bytes": 4096},
        },
    )
    server.index(FIXTURES / "corpus")
    server.start()
    yield server
    server.stop()
    no_packets_left(server)


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = guarded_server(tmp_path_factory.mktemp("strict"), {"code_execution": {"enabled": False}}).start()
    yield server
    server.stop()
    no_packets_left(server)


def client_for(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def streamed(client: genai.Client, **body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events = [
        e.model_dump(mode="json", exclude_none=True, by_alias=True)
        for e in client.interactions.create(model=MODEL, stream=True, **body)
    ]
    return check_stream(events), events


def no_packets_left(server: LiveServer) -> None:
    netguard.no_packets_left(server.guard_log)  # type: ignore[attr-defined]


def test_search_then_answer_with_citations(tools_server: LiveServer) -> None:
    client = client_for(tools_server)
    script = rounds([call("google_search", queries=["highest mountain in Europe"])], [{"text": "Mount Elbrus."}])
    result, events = streamed(client, input=script, tools=[{"type": "google_search"}])
    assert [s["type"] for s in result["steps"]] == ["google_search_call", "google_search_result", "model_output"]
    call_step, result_step, _ = result["steps"]
    assert call_step["deltas"][0]["arguments"] == {"queries": ["highest mountain in Europe"]}
    assert result_step["start"]["call_id"] == call_step["start"]["id"]
    hits = result_step["deltas"][0]["result"]
    assert {h["url"].rsplit("/", 1)[1] for h in hits[:2]} == {"elbrus.md", "mont-blanc.md"}
    assert all(h["title"] and h["snippet"] for h in hits)
    assert result["status"] == "completed"
    interaction = client.interactions.get(events[0]["interaction"]["id"])
    text = interaction.steps[2].content[0]
    assert text.text == "Mount Elbrus."
    cited = {a.url for a in text.annotations}
    assert cited == {h["url"] for h in hits}
    assert all(a.type == "url_citation" and a.end_index == len(text.text) for a in text.annotations)
    assert [(g.type, g.count) for g in interaction.usage.grounding_tool_count] == [("google_search", 1)]
    no_packets_left(tools_server)


def test_seed_multi_tool_flow_and_second_turn(tools_server: LiveServer) -> None:
    client = client_for(tools_server)
    weather = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }
    first = client.interactions.create(
        model=MODEL,
        tools=[{"type": "google_search"}, weather],
        input="Search what it the largest mountain in Europe and what the weather is there right now?",
    )
    assert [s.type for s in first.steps] == ["google_search_call", "google_search_result", "thought", "function_call"]
    assert first.status == "requires_action"
    call_step = first.steps[-1]
    second = client.interactions.create(
        model=MODEL,
        previous_interaction_id=first.id,
        input=[{"type": "function_result", "call_id": call_step.id, "name": "get_weather", "result": "sunny"}],
    )
    assert second.status == "completed" and second.output_text == "The weather is sunny, 22°C."


def test_code_execution_result_is_stated(tools_server: LiveServer) -> None:
    script = rounds(
        [call("code_execution", code="print(sum(range(101)))")], [{"text_from_result": "The sum is {result}."}]
    )
    client = client_for(tools_server)
    result, _ = streamed(client, input=script, tools=[{"type": "code_execution"}])
    call_step, result_step, answer = result["steps"]
    assert call_step["deltas"][0]["arguments"] == {"code": "print(sum(range(101)))", "language": "python"}
    assert result_step["deltas"][0]["result"] == "5050\n" and result_step["deltas"][0]["is_error"] is False
    assert answer["text"] == "The sum is 5050."


ESCAPES = {
    # No AF_INET socket opens at all (the filter); beneath it, the sandbox's network namespace is empty.
    "network": ("import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)", "Operation not permitted"),
    "shadow": ("print(open('/etc/shadow').read())", "No such file"),
    "project files": (f"print(open({str(Path(__file__))!r}).read())", "No such file"),
    "write outside scratch": ("open('/usr/evil', 'w').write('x')", "Read-only file system"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "Resource temporarily unavailable"),
    "memory bomb": ("x = bytearray(2 ** 33)", "MemoryError"),
    "infinite loop": ("while True:\n    pass", "CPU time limit reached"),
    "huge output": ("while True:\n    print('x' * 1000)", "output reached the limit of 4096 bytes"),
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_sandbox_contains(tools_server: LiveServer, website: str, name: str) -> None:
    code, expected = ESCAPES[name]
    code = code.replace("{port}", website.rsplit(":", 1)[1])
    client = client_for(tools_server)
    script = rounds([call("code_execution", code=code)], [{"text": "done"}])
    result = client.interactions.create(model=MODEL, input=script, tools=[{"type": "code_execution"}])
    outcome = result.steps[1]
    assert outcome.type == "code_execution_result" and outcome.is_error is True
    assert expected in outcome.result
    assert client.interactions.create(model=MODEL, input="hello").status == "completed"  # still serving
    no_packets_left(tools_server)


def test_url_context_reads_a_loopback_page(tools_server: LiveServer, website: str) -> None:
    script = rounds([{"text_from_result": "{result}"}])
    result, _ = streamed(
        client_for(tools_server), input=f"{script} Summarise {website}/page please.", tools=[{"type": "url_context"}]
    )
    call_step, result_step, answer = result["steps"]
    assert call_step["deltas"][0]["arguments"] == {"urls": [f"{website}/page"]}
    page = result_step["deltas"][0]["result"][0]
    assert page["status"] == "success" and "secret" in page["title"]
    assert "7341" in page["text"] and "7341" in answer["text"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/redirect-private", "unsafe"),
        ("/redirect-metadata", "unsafe"),
        ("/redirect-page", "success"),
        ("/forbidden", "paywall"),
        ("/binary", "error"),
        ("/missing", "error"),
    ],
)
def test_url_context_statuses(tools_server: LiveServer, website: str, path: str, status: str) -> None:
    script = rounds([{"text": "ok"}])
    client = client_for(tools_server)
    done = client.interactions.create(model=MODEL, input=f"{script} {website}{path}", tools=[{"type": "url_context"}])
    assert done.steps[1].result[0].status == status
    no_packets_left(tools_server)


def refused_hosts(server: LiveServer) -> set[str]:
    """The hosts the server's egress point refused, as it recorded them."""
    recorded = netguard.attempts(server.guard_log)  # type: ignore[attr-defined]
    return {canonical(a["host"]) for a in recorded if a["outcome"] == "refused"}


def canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


def test_ssrf_targets_are_refused_without_a_packet(strict_server: LiveServer, website: str) -> None:
    targets = [
        "http://10.1.2.3/",
        "http://192.168.1.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fd00::1]/",
        f"{website}/page",
        f"http://localhost:{website.rsplit(':', 1)[1]}/page",
    ]
    script = rounds([{"text": "ok"}])
    client = client_for(strict_server)
    done = client.interactions.create(
        model=MODEL, input=f"{script} " + " ".join(targets[:5]), tools=[{"type": "url_context"}]
    )
    assert [r.status for r in done.steps[1].result] == ["unsafe"] * 5
    client = client_for(strict_server)
    done = client.interactions.create(
        model=MODEL, input=f"{script} " + " ".join(targets[5:]), tools=[{"type": "url_context"}]
    )
    statuses = {r.url: (r.status, r.model_extra.get("error")) for r in done.steps[1].result}
    assert all(status == "unsafe" and "loopback" in error for status, error in statuses.values()), statuses
    # the egress point saw each one, and refused it before connecting
    assert {canonical(urlsplit(t).hostname or "") for t in targets} <= refused_hosts(strict_server)
    no_packets_left(strict_server)


def test_tunnels_and_cloud_endpoints_are_refused_before_connecting(strict_server: LiveServer) -> None:
    targets = {
        "http://[2002:a9fe:a9fe::1]/": "6to4 address of 169.254.169.254",
        "http://[fec0::1]/": "site-local",
        "http://168.63.129.16/machine?comp=goalstate": "Azure",
        "http://100.100.100.200/latest/meta-data/": "Alibaba",
        "http://[64:ff9b::a9fe:a9fe]/": "NAT64 address of 169.254.169.254",
    }
    script = rounds([{"text": "ok"}])
    client = client_for(strict_server)  # kept: a client collected mid-call closes its connection
    done = client.interactions.create(
        model=MODEL, input=f"{script} " + " ".join(targets), tools=[{"type": "url_context"}]
    )
    results = {r.url: (r.status, r.model_extra.get("error") or "") for r in done.steps[1].result}
    assert all(results[url][0] == "unsafe" and why in results[url][1] for url, why in targets.items()), results
    assert {canonical(urlsplit(t).hostname or "") for t in targets} <= refused_hosts(strict_server)
    no_packets_left(strict_server)


def test_tool_rounds_are_bounded(tools_server: LiveServer) -> None:
    forever = [call("code_execution", code="print(1)")]
    client = client_for(tools_server)
    done = client.interactions.create(model=MODEL, input=rounds(*[forever] * 12), tools=[{"type": "code_execution"}])
    assert done.status == "budget_exceeded"
    assert [s.type for s in done.steps].count("code_execution_result") == 8  # tools.max_rounds


def test_unavailable_or_conflicting_tools_are_400s(strict_server: LiveServer) -> None:
    client = client_for(strict_server)
    with pytest.raises(BadRequestError, match=r"unavailable on this server: disabled by tools\.code_execution"):
        client.interactions.create(model=MODEL, input="x", tools=[{"type": "code_execution"}])
    with pytest.raises(BadRequestError, match="has the name of a server tool"):
        client.interactions.create(
            model=MODEL, input="x", tools=[{"type": "google_search"}, {"type": "function", "name": "google_search"}]
        )
