"""A server killed (SIGKILL) while a server tool runs: the run taken over after the restart runs that tool again
from its logged call, logs its result and goes on; the resuming client sees one gap-free stream."""

from __future__ import annotations

import json
from pathlib import Path

from live import LiveServer
from resuming import Follower, wait_for


def test_a_server_tool_cut_off_by_a_crash_runs_again_and_the_run_goes_on(tmp_path: Path) -> None:
    code = "import time\ntime.sleep(2)\nprint(6 * 7)"
    script = json.dumps({"rounds": [[{"call": {"name": "code_execution", "arguments": {"code": code}}}],
                                    [{"text_from_result": "The answer is {result}"}]]})  # fmt: skip
    sections = {
        "models.m": {"backend": "scripted", "inline": True},
        "tools.code_execution": {"wall_seconds": 20, "cpu_seconds": 5},
    }
    server = LiveServer(tmp_path, sections).start()
    body = {"model": "m", "input": script, "tools": [{"type": "code_execution"}]}
    try:
        with server.http() as http:
            reference = http.post("/v1beta/interactions", json=body).json()
            interaction_id = http.post("/v1beta/interactions", json={**body, "background": True}).json()["id"]
        before = Follower(server, interaction_id)
        wait_for(lambda: any(e.get("step", {}).get("type") == "code_execution_call" for e in before.events))
        server.kill()  # the program sleeps in the sandbox
        before.join(5)
        server.start()
        after = Follower(server, interaction_id, before.last_id())
        after.join(60)
        with server.http() as http:
            got = http.get(f"/v1beta/interactions/{interaction_id}").json()
    finally:
        server.stop()
    assert after.done
    joined = before.events + after.events
    assert [e["event_id"] for e in joined] == [str(n) for n in range(1, len(joined) + 1)]
    assert got["status"] == "completed", got
    assert [s["type"] for s in got["steps"]] == [s["type"] for s in reference["steps"]] == [
        "code_execution_call", "code_execution_result", "model_output"]  # fmt: skip
    assert got["steps"][1]["result"] == reference["steps"][1]["result"] == "42\n"
    assert got["steps"][2] == reference["steps"][2]
    assert got["usage"] == reference["usage"]  # the first round's, saved before its tool ran, counts
    assert sum(e.get("step", {}).get("type") == "code_execution_call" for e in joined) == 1  # not logged twice
