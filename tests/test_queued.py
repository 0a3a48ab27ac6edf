"""limits.max_runs_per_model: runs beyond it wait with status queued, first come first served, and start as
slots free up; a cancelled queued run leaves the queue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from live import LiveServer, sse_events

HANG = json.dumps({"script": [{"text": "busy"}, {"hang": True}]})


def _script(text: str) -> str:
    return json.dumps({"script": [{"text": text}]})


def _status(http: Any, interaction_id: str) -> str:
    return http.get(f"/v1beta/interactions/{interaction_id}").json()["status"]


def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_runs_over_the_model_limit_are_queued_in_order(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path, {"models.m": {"backend": "scripted", "inline": True}, "limits": {"max_runs_per_model": 1}}
    )
    server.start()
    try:
        with server.http() as http:

            def create(text: str) -> dict[str, Any]:
                body = {"model": "m", "input": text, "background": True}
                return http.post("/v1beta/interactions", json=body).json()

            busy = create(HANG)
            first, cancelled, second = create(_script("first")), create(_script("never")), create(_script("second"))
            assert busy["status"] == "in_progress"
            assert [first["status"], cancelled["status"], second["status"]] == ["queued"] * 3
            assert _status(http, first["id"]) == "queued"
            assert http.post(f"/v1beta/interactions/{cancelled['id']}/cancel").json()["status"] == "cancelled"
            http.post(f"/v1beta/interactions/{busy['id']}/cancel")
            _until(lambda: _status(http, second["id"]) == "completed")
            events = sse_events(http.get(f"/v1beta/interactions/{first['id']}?stream=true").text)
            times = [http.get(f"/v1beta/interactions/{i['id']}").json()["updated"] for i in (first, second)]
    finally:
        server.stop()
    kinds = [(e["event_type"], e.get("status") or e.get("interaction", {}).get("status")) for e in events[:-1]]
    assert kinds[:3] == [
        ("interaction.created", "queued"),
        ("interaction.status_update", "queued"),
        ("interaction.status_update", "in_progress"),
    ]
    assert kinds[-1] == ("interaction.completed", "completed")
    assert times[0] <= times[1]  # first come, first served
