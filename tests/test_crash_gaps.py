"""What a crash must not cost a run (issue 15: "continued, not failed"; "identical to an uninterrupted run"):

- a kill while a server tool runs: the tool runs again after the restart and the run completes;
- a kill in a later round of the tool loop: the rounds before it keep their usage (saved in the row) and the
  citation sources their logged results gave (the last text carries the same url_citation annotations).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google import genai

from live import FIXTURES, LiveServer, free_port
from resuming import CrashingServer, ResumingReader, check_ids, wait_for


@pytest.fixture
def slow_page() -> Iterator[tuple[str, threading.Event]]:
    """A loopback page that answers once released (or after 10 s): a url_context fetch is running until then."""
    asked, release = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.set()
            release.wait(10)
            body = b"<html><title>t</title><body>a slow page</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/page", asked
    finally:
        release.set()
        server.shutdown()


def crash_once(server: CrashingServer, body: dict[str, Any], when: Any) -> tuple[ResumingReader, Any]:
    """Create a background run, kill the server once ``when(events)`` holds, restart it; the reader (at its
    end) and the stored interaction."""
    client = genai.Client(api_key="k", http_options={"base_url": server.url})
    reader = ResumingReader(server, client.interactions.create(**body).id, seconds=30)
    reader.start()
    wait_for(lambda: when(reader.events), what="the moment of the kill")
    server.kill()
    server.start()
    reader.join(30)
    assert reader.done and reader.connections == 2, (reader.failure, reader.unexpected)
    check_ids(reader.events)
    return reader, client.interactions.get(reader.id)


def test_a_kill_while_a_server_tool_runs_does_not_fail_the_run(
    tmp_path: Path, slow_page: tuple[str, threading.Event]
) -> None:
    url, asked = slow_page
    models = {"models.m": {"backend": "scripted", "inline": True}}
    live = LiveServer(tmp_path, {**models, "tools.url_context": {"allow_networks": ["127.0.0.1/32"]}})
    server = CrashingServer(live)
    server.start()
    call = {"name": "url_context", "arguments": {"urls": [url]}, "id": "read0001"}
    script = json.dumps({"rounds": [[{"text": "Reading."}, {"call": call}], [{"text": "Read it."}]]})
    body = {"model": "m", "input": script, "tools": [{"type": "url_context"}], "background": True}
    try:
        _, got = crash_once(server, body, lambda events: asked.is_set() and events)
    finally:
        server.stop()
    assert got.status == "completed", got.errors


def test_a_kill_in_a_later_round_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, {"models.m": {"backend": "scripted", "inline": True}})
    live.index(FIXTURES / "corpus")
    server = CrashingServer(live)
    server.start()
    search = {"name": "google_search", "arguments": {"queries": ["mountain"]}, "id": "search01"}
    second = [{"text": "Found"}, {"sleep_ms": 1500}, {"text": " it."}]
    script = json.dumps({"rounds": [[{"text": "Searching."}, {"call": search}], second]})
    body = {"model": "m", "input": script, "tools": [{"type": "google_search"}], "background": True}
    client = genai.Client(api_key="k", http_options={"base_url": server.url})
    try:
        uninterrupted = client.interactions.create(**{**body, "background": False})
        _, got = crash_once(server, body, lambda events: any(e.get("delta", {}).get("text") == "Found" for e in events))
    finally:
        server.stop()
    assert got.status == uninterrupted.status == "completed"
    assert (got.usage.total_tokens, got.usage.total_input_tokens) == (  # type: ignore[union-attr]
        uninterrupted.usage.total_tokens,  # type: ignore[union-attr]
        uninterrupted.usage.total_input_tokens,  # type: ignore[union-attr]
    )
    assert got.steps == uninterrupted.steps  # the last text's url_citation annotations included
