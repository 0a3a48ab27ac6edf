"""Configured limits are enforced with clear errors, and a crash never leaves a run looking alive."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live import LiveServer, sse_events

MODEL = "gemini-3-flash-preview"


def script(*events: dict[str, object]) -> str:
    return json.dumps({"script": list(events)})


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp("limited"),
        {
            "limits": {"max_events_per_interaction": 20, "run_timeout_seconds": 0.5},
            "store": {"max_interactions_per_owner": 3},
            f"models.{MODEL}": {"backend": "scripted", "inline": True},
        },
    ).start()
    yield server
    server.stop()


def test_event_limit_fails_the_run_cleanly(limited: LiveServer) -> None:
    with limited.http() as http:
        text = http.post(
            "/v1beta/interactions",
            json={
                "model": MODEL,
                "input": script({"repeat": 50, "events": [{"text": "x"}]}),
                "stream": True,
                "store": False,
            },
        ).text
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    assert events[-3]["event_type"] == "step.stop"
    assert events[-2]["event_type"] == "error"
    assert events[-2]["error"]["code"] == "resource_exhausted"


def test_run_timeout(limited: LiveServer) -> None:
    with limited.http() as http:
        result = http.post(
            "/v1beta/interactions",
            json={"model": MODEL, "input": script({"text": "slow"}, {"hang": True}), "store": False},
        ).json()
    assert result["status"] == "failed"
    assert result["errors"] == [{"code": "deadline_exceeded", "message": "the run took longer than 0.5 s"}]
    assert result["steps"] == [{"type": "model_output", "content": [{"type": "text", "text": "slow"}]}]


def test_storage_quota(limited: LiveServer) -> None:
    with limited.http() as http:
        for _ in range(3):
            assert (
                http.post("/v1beta/interactions", json={"model": MODEL, "input": script({"text": "a"})}).status_code
                == 200
            )
        refused = http.post("/v1beta/interactions", json={"model": MODEL, "input": script({"text": "a"})})
        assert refused.status_code == 400
        assert refused.json()["error"]["status"] == "FAILED_PRECONDITION"
        assert "storage quota" in refused.json()["error"]["message"]
        stateless = http.post(
            "/v1beta/interactions", json={"model": MODEL, "input": script({"text": "a"}), "store": False}
        )
        assert stateless.status_code == 200


@contextlib.contextmanager
def half_way(http: httpx.Client) -> Iterator[tuple[str, Iterator[str]]]:
    """A streaming create whose run has sent its text and hangs: its id, and the rest of its lines."""
    body = {"model": MODEL, "input": script({"text": "half"}, {"hang": True}), "stream": True}
    with http.stream("POST", "/v1beta/interactions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines) == "event: interaction.created"
        interaction_id = json.loads(next(lines)[6:])["interaction"]["id"]
        for line in lines:
            if '"text":"half"' in line:
                break
        yield interaction_id, lines


def test_a_run_that_cannot_go_on_after_a_crash_fails_with_its_log_kept(tmp_path: Path) -> None:
    """Runs continue after a crash (tests/test_crash_continuation.py), unless their model is no longer served:
    then the run fails, and what its clients saw stays its log, so that every resume point still holds."""
    server = LiveServer(tmp_path, {f"models.{MODEL}": {"backend": "scripted", "inline": True}}).start()
    with server.http() as http, half_way(http) as (interaction_id, _):
        server.kill()
    server = LiveServer(tmp_path, {"models.another-model": {"backend": "scripted", "inline": True}}).start()
    try:
        with server.http() as http:
            got = http.get(f"/v1beta/interactions/{interaction_id}").json()
            events = sse_events(http.get(f"/v1beta/interactions/{interaction_id}?stream=true").text)
            # the client had seen ids 1 to 4 (created, status_update, step.start, step.delta) before the crash
            resumed = [sse_events(http.get(f"/v1beta/interactions/{interaction_id}?stream=true&last_event_id={n}").text)
                       for n in range(1, 5)]  # fmt: skip
    finally:
        server.stop()
    assert got["status"] == "failed"
    assert got["errors"][0]["code"] == "aborted"
    assert got["steps"] == [{"type": "model_output", "content": [{"type": "text", "text": "half"}]}]
    types = [e if isinstance(e, str) else e["event_type"] for e in events]
    assert types == ["interaction.created", "interaction.status_update", "step.start", "step.delta", "step.stop",
                     "error", "[DONE]"]  # fmt: skip
    assert all(tail == events[n:] for n, tail in enumerate(resumed, 1)), resumed


def test_one_server_keeps_its_sqlite_file_and_a_second_one_is_refused_clearly(tmp_path: Path) -> None:
    """store.sqlite_exclusive (the default): no other process opens the file while the server runs; with
    it off, another process can read the file meanwhile."""
    models = {f"models.{MODEL}": {"backend": "scripted", "inline": True}}
    first = LiveServer(tmp_path, models).start()
    try:
        with first.http() as http:
            assert http.post("/v1beta/interactions", json={"model": MODEL, "input": "hi"}).status_code == 200
        second = LiveServer(tmp_path, models)
        with pytest.raises(RuntimeError, match="is in use by another process"):
            second.start()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            first.db_rows()
    finally:
        first.stop()
    shared = LiveServer(tmp_path, {**models, "store": {"sqlite_exclusive": False}}).start()
    try:
        assert len(shared.db_rows()) == 1  # what the first server stored, read while this one runs
    finally:
        shared.stop()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_the_server_cancels_its_runs_and_stores_them_at_once(tmp_path: Path, stop: int) -> None:
    """uvicorn would wait for every open response, and a run can last its whole time limit (15 minutes by
    default): the runs are cancelled, their streams end properly, and the server exits with status 0 (on
    SIGTERM it used to exit 143: uvicorn raises the signal again once it has shut down)."""
    settings = {f"models.{MODEL}": {"backend": "scripted", "inline": True}, "server": {"keepalive_seconds": 60}}
    server = LiveServer(tmp_path, settings).start()
    assert server.process is not None
    # the stream stalling is the failure: no keep-alive comes for 60 s
    with server.http(timeout=10) as http, half_way(http) as (interaction_id, lines):
        server.process.send_signal(stop)
        tail = sse_events("\n".join(lines))
    assert server.process.wait(10) == 0  # at once (the runs' time limit is 900 s), and cleanly
    assert [e if isinstance(e, str) else e["event_type"] for e in tail] == [
        "step.stop",
        "interaction.completed",
        "[DONE]",
    ]
    assert tail[1]["interaction"]["status"] == "cancelled"  # type: ignore[index]
    server.start()
    try:
        with server.http() as http:
            assert http.get(f"/v1beta/interactions/{interaction_id}").json()["status"] == "cancelled"
    finally:
        server.stop()
