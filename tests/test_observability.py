"""Operators' view: ``/metrics`` scraped after known traffic must count exactly that traffic; ``/readyz``; JSON
logs that name the interaction. The server is real (a process on loopback), the model a scripted test double."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from prometheus_client.parser import text_string_to_metric_families

from inprocess import scripted_service
from live import FIXTURES, LiveServer
from resuming import Follower, wait_for
from test_webhooks import FAST, Receiver, receiver  # noqa: F401 (the receiver fixture)

KEY = "observer-key-0001"
MODEL = "m"
INTERACTIONS = "/{version}/interactions"


def script(*events: dict[str, Any]) -> str:
    return json.dumps({"script": list(events)})


def rounds(*events: list[dict[str, Any]]) -> str:
    return json.dumps({"rounds": list(events)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("observed"), {
        "auth": {"api_keys": [KEY]},
        "webhooks": FAST,
        f"models.{MODEL}": {"backend": "scripted", "inline": True},
        "tools.code_execution": {"enabled": False},
        "server": {"log_format": "json"},
    })  # fmt: skip
    live.index(FIXTURES / "corpus")
    yield live.start()
    live.stop()


def scrape(server: LiveServer, key: str | None = KEY) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{server.url}/metrics", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_traffic_they_saw(server: LiveServer, receiver: Receiver) -> None:  # noqa: F811
    client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
    before = scrape(server)
    done = [client.interactions.create(model=MODEL, input=script({"text": "one two three"})) for _ in range(3)]
    streamed = [list(client.interactions.create(model=MODEL, input=script({"text": "a b"}), stream=True))
                for _ in range(2)]  # fmt: skip
    failed = client.interactions.create(model=MODEL, input=script({"error": {"message": "boom"}}))
    searched = client.interactions.create(
        model=MODEL, tools=[{"type": "google_search"}],
        input=rounds([{"call": {"name": "google_search", "arguments": {"queries": ["Elbrus"]}}}],
                     [{"text": "found"}]),
        webhook_config={"uris": [receiver.url]},
    )  # fmt: skip
    bad = httpx.post(f"{server.url}/v1beta/interactions", headers={"x-goog-api-key": KEY}, json={"model": MODEL})
    assert bad.status_code == 400 and failed.status == "failed" and searched.status == "completed"
    receiver.wait(1)
    wait_for(lambda: value(scrape(server), "openinteractions_webhook_deliveries_total", outcome="delivered") == 1)
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    created = {"method": "POST", "route": INTERACTIONS}
    assert grew("openinteractions_http_requests_total", **created, status="200") == 7
    assert grew("openinteractions_http_requests_total", **created, status="400") == 1
    runs = {"model": MODEL, "backend": "scripted"}
    assert grew("openinteractions_runs_ended_total", **runs, status="completed") == 6
    assert grew("openinteractions_runs_ended_total", **runs, status="failed") == 1
    ids = [i.id for i in [*done, failed, searched]] + [s[0].interaction.id for s in streamed]
    stored = [client.interactions.get(i) for i in ids]
    outputs = sum(i.usage.total_output_tokens or 0 for i in stored if i.usage is not None)
    assert grew("openinteractions_tokens_total", **runs, kind="output") == outputs
    events = sum(len(list(client.interactions.get(i, stream=True))) for i in ids)
    assert grew("openinteractions_events_total", model=MODEL) == events
    assert grew("openinteractions_tool_calls_total", tool="google_search", outcome="ok") == 1
    assert grew("openinteractions_time_to_first_event_seconds_count") == 2  # the two streamed creates
    # each stored replay above was a stream too; all have ended
    assert value(after, "openinteractions_active_streams") == 0
    assert grew("openinteractions_webhook_deliveries_total", outcome="delivered") == 1


def test_running_and_streaming_now_show_in_the_gauges(server: LiveServer) -> None:
    client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
    created = client.interactions.create(model=MODEL, input=script({"text": "x"}, {"hang": True}), background=True)
    follower = Follower(server, created.id, headers={"x-goog-api-key": KEY})
    wait_for(lambda: any(e["event_type"] == "step.delta" for e in follower.events))
    during = scrape(server)
    client.interactions.cancel(created.id)
    follower.join(10)
    assert value(during, "openinteractions_runs_running") == 1 and value(during, "openinteractions_runs_queued") == 0
    assert value(during, "openinteractions_active_streams") == 1
    wait_for(lambda: value(scrape(server), "openinteractions_runs_running") == 0)


def test_metrics_need_a_key_where_keys_are_configured(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer wrong-key-000"}).status_code in (
        401,
        403,
    )


def test_readiness_and_liveness_are_open(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_logs_are_json_lines_that_name_the_interaction(server: LiveServer) -> None:
    client = genai.Client(api_key=KEY, http_options={"base_url": server.url})
    failed = client.interactions.create(model=MODEL, input=script({"text": "x"}, {"error": {"message": "kaput"}}))
    lines = [json.loads(line) for line in server.log if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    wait_for(lambda: any(line.startswith("{") and failed.id in line for line in server.log))
    mine = [json.loads(line) for line in server.log if line.startswith("{") and failed.id in line]
    assert mine[0]["interaction_id"] == failed.id and mine[0]["level"] == "warning"
    assert mine[0]["message"] == f"interaction {failed.id} failed: internal: kaput"


def test_not_ready_while_starting_shutting_down_or_without_its_database(tmp_path: Path) -> None:
    async def check() -> list[str | None]:
        service = scripted_service(tmp_path)
        seen = [await service.readiness()]
        await service.start()
        seen.append(await service.readiness())

        async def down(now: float) -> bool:
            raise ConnectionError("connection refused")

        lapsed, service.store.lapsed = service.store.lapsed, down  # type: ignore[method-assign]
        seen.append(await service.readiness())
        service.store.lapsed = lapsed  # type: ignore[method-assign]
        service.begin_shutdown()
        seen.append(await service.readiness())
        await service.stop()
        return seen

    assert asyncio.run(check()) == [
        "starting",
        None,
        "the store does not answer: ConnectionError: connection refused",
        "shutting down",
    ]
