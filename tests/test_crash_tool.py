"""A server killed (SIGKILL) while a server tool runs: the run taken over after the restart runs that tool again
from its logged call, logs its result and goes on; the resuming client sees one gap-free stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from google import genai

from live import LiveServer
from resuming import Follower, wait_for


def through_a_crash(
    server: LiveServer, interaction_id: str, cut: Callable[[list[dict[str, Any]]], bool]
) -> tuple[Follower, Follower, dict[str, Any]]:
    """Follow a background run, kill -9 the server once ``cut`` holds for the events so far, restart it and
    follow the run from the last event seen: both followers, and the interaction once it ends."""
    before = Follower(server, interaction_id)
    wait_for(lambda: cut(before.events))
    server.kill()
    before.join(5)
    server.start()
    after = Follower(server, interaction_id, before.last_id())
    after.join(60)
    with server.http() as http:
        got: dict[str, Any] = http.get(f"/v1beta/interactions/{interaction_id}").json()
    return before, after, got


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
        before, after, got = through_a_crash(
            server,
            interaction_id,  # the program sleeps in the sandbox when the server is killed
            lambda events: any(e.get("step", {}).get("type") == "code_execution_call" for e in events),
        )
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


class SlowEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings server that never answers a query that says "stall" (the search is
    then running when the server is killed); every other text gets a vector."""

    queries: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["content-length"])))["input"]
        if any("stall" in text for text in texts):
            self.queries.extend(texts)
            time.sleep(60)  # the server that asked is killed meanwhile: nobody reads this answer
            return
        self.queries.extend(text for text in texts if len(text) < 40)
        data = [{"index": i, "embedding": [1.0] + [0.0] * 7} for i in range(len(texts))]
        answer = json.dumps({"object": "list", "data": data, "model": "m"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def test_a_file_search_cut_off_by_a_crash_is_answered_as_lost_and_the_model_asks_again(tmp_path: Path) -> None:
    """The spec's file_search_call step keeps no query, so a run taken over cannot search again as the model
    asked: the call is answered with an error that says so (never a search for nothing), and the model's next
    round searches again."""
    embeddings = ThreadingHTTPServer(("127.0.0.1", 0), SlowEmbeddings)
    threading.Thread(target=embeddings.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{embeddings.server_address[1]}/v1"
    sections = {
        "models.m": {"backend": "scripted", "inline": True},
        "tools.file_search": {"embeddings": "openai", "embeddings_url": url, "embeddings_model": "m"},
    }
    server = LiveServer(tmp_path, sections).start()
    try:
        notes = tmp_path / "herons.txt"
        notes.write_text("Herons wait in reeds.")
        with genai.Client(api_key="k", http_options={"base_url": server.url}) as sdk:
            store = str(sdk.file_search_stores.create(config={"display_name": "notes"}).name)
            done = sdk.file_search_stores.upload_to_file_search_store(file_search_store_name=store, file=str(notes))
            assert done.done and done.error is None, done
        with server.http() as http:
            rounds = [[{"call": {"name": "file_search", "arguments": {"queries": ["stall herons"]}}}],
                      [{"call": {"name": "file_search", "arguments": {"queries": ["herons"]}}}],
                      [{"text_from_result": "Found: {result}"}]]  # fmt: skip
            body = {"model": "m", "input": json.dumps({"rounds": rounds}), "background": True,
                    "tools": [{"type": "file_search", "file_search_store_names": [store]}]}  # fmt: skip
            interaction_id = http.post("/v1beta/interactions", json=body).json()["id"]
        # Killed while the search waits on the embeddings server.
        before, after, got = through_a_crash(server, interaction_id, lambda _: "stall herons" in SlowEmbeddings.queries)
    finally:
        server.stop()
        embeddings.shutdown()
    assert after.done and got["status"] == "completed", got
    joined = before.events + after.events
    assert [e["event_id"] for e in joined] == [str(n) for n in range(1, len(joined) + 1)]
    assert [s["type"] for s in got["steps"]] == ["file_search_call", "file_search_result"] * 2 + ["model_output"]
    assert "call it again" in got["steps"][1]["result"][0]["error"]
    assert got["steps"][3]["result"][0]["text"] == "Herons wait in reeds."
    assert got["steps"][4]["content"][0]["text"] == "Found: Herons wait in reeds."
    assert "" not in SlowEmbeddings.queries  # no search for nothing
    assert SlowEmbeddings.queries.count("stall herons") == 1 and "herons" in SlowEmbeddings.queries


def test_a_document_whose_indexing_server_died_fails_instead_of_pending_for_ever(tmp_path: Path) -> None:
    """The uploaded bytes lived only in the server that indexed them: after a crash the restarted server marks
    the document failed, and its operation ends with an error that says to upload it again."""
    embeddings = ThreadingHTTPServer(("127.0.0.1", 0), SlowEmbeddings)
    threading.Thread(target=embeddings.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{embeddings.server_address[1]}/v1"
    sections = {
        "models.m": {"backend": "scripted", "inline": True},
        "tools.file_search": {"embeddings": "openai", "embeddings_url": url, "embeddings_model": "m",
                              "wait_seconds": 0.1},
    }  # fmt: skip
    server = LiveServer(tmp_path, sections).start()
    notes = tmp_path / "stalling.txt"
    notes.write_text("Herons stall in the reeds at dawn.")
    try:
        with genai.Client(api_key="k", http_options={"base_url": server.url}) as sdk:
            store = str(sdk.file_search_stores.create(config={"display_name": "notes"}).name)
            pending = sdk.file_search_stores.upload_to_file_search_store(file_search_store_name=store, file=str(notes))
            assert not pending.done  # indexing: its passages wait on the embeddings server
        wait_for(lambda: any("Herons stall" in text for text in SlowEmbeddings.queries))
        server.kill()
        server.start()
        with genai.Client(api_key="k", http_options={"base_url": server.url}) as sdk:
            operation = sdk.operations.get(pending)
            documents = list(sdk.file_search_stores.documents.list(parent=store))
    finally:
        server.stop()
        embeddings.shutdown()
    assert operation.done and operation.error is not None and "upload it again" in operation.error["message"]
    assert [str(d.state) for d in documents] == ["DocumentState.STATE_FAILED"]
