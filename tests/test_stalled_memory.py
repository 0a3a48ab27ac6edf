"""Clients that stop reading cost the server a bounded amount of memory, measured on the server's process.

Stalled clients: sockets with a small receive buffer that read nothing (or a first few bytes). RSS comes
from /proc/<pid>/status; the bounds are several times what the server needs and well under what it used
to take (figures in the comments: 2 vCPUs, SQLite).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from live import LiveServer

MODEL = "m"
WORDS = ("lorem ipsum dolor sit amet " * 400).strip()  # ~10.8 KB a text delta
MB = 1_000_000


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _stalled(port: int, method: str, path: str, body: bytes = b"") -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    sock.sendall(head.encode() + b"content-length: %d\r\n\r\n" % len(body) + body)
    return sock


def _script(megabytes: int) -> str:
    return json.dumps({"script": [{"repeat": megabytes * MB // len(WORDS), "events": [{"text": WORDS}]}]})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path, {f"models.{MODEL}": {"backend": "scripted", "inline": True}}).start()
    yield live
    live.stop()


def test_stalled_replays_of_a_stored_log_hold_a_page_each(server: LiveServer) -> None:
    """20 GET ?stream=true of a stored 10 MB interaction whose clients stop reading. Each used to hold its own
    copies of the whole log (+400 MB in all); each holds a page (1 MiB) and about as much in its connection's
    write buffer now (+41 MB in all)."""
    assert server.process is not None
    pid = server.process.pid
    with server.http(timeout=60) as http:
        interaction_id = http.post("/v1beta/interactions", json={"model": MODEL, "input": _script(10)}).json()["id"]
        size = len(http.get(f"/v1beta/interactions/{interaction_id}?stream=true").content)
    assert size > 10 * MB
    before = _status(pid, "VmRSS")
    readers = [_stalled(server.port, "GET", f"/v1beta/interactions/{interaction_id}?stream=true") for _ in range(20)]
    for reader in readers:
        assert reader.recv(16).startswith(b"HTTP/1.1 200")  # its response has begun: the log was read by now
    samples = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # the next pages are read while the first ones wait in the buffers
        samples.append(_status(pid, "VmRSS"))
        time.sleep(0.05)
    grew = max(samples) - before
    for reader in readers:
        reader.close()
    assert grew < 100 * MB, f"20 stalled readers took {grew / MB:.0f} MB"
