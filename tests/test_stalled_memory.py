"""Clients that stop reading cost the server a bounded amount of memory, measured on the server's process.

Stalled clients: sockets with a small receive buffer that read nothing (or a first few bytes). RSS comes
from /proc/<pid>/status; the bounds are several times what the server needs and well under what it used
to take (figures in the comments: 2 vCPUs, SQLite).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from live import LiveServer
from openinteractions.events.log import split_frames

MODEL = "m"
WORDS = ("lorem ipsum dolor sit amet " * 400).strip()  # ~10.8 KB a text delta
MB = 1_000_000


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _cpu(pid: int) -> tuple[bool, int]:
    """Whether every thread of the process sleeps, and the CPU time the process has used (clock ticks)."""
    asleep = True
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that has just ended
            asleep &= (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("S", "I")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return asleep, int(fields[11]) + int(fields[12])  # utime, stime


def _until_idle(pid: int, seconds: float = 60.0) -> None:
    """Until the process has nothing left to do: every thread asleep and no CPU time used for 0.3 s. Not
    starved of the CPU on a loaded machine (a starved thread is runnable, not asleep), nor between pages."""
    deadline = time.monotonic() + seconds
    quiet, last = 0, -1
    while quiet < 6:
        assert time.monotonic() < deadline, "the server never went idle"
        asleep, ticks = _cpu(pid)
        quiet = quiet + 1 if asleep and ticks == last else 0
        last = ticks
        time.sleep(0.05)


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
    # Not the exclusive SQLite file: a run's end is read from the database, which costs the server nothing (a
    # GET of a running interaction renders all of it, and would count in the peak measured).
    sections = {f"models.{MODEL}": {"backend": "scripted", "inline": True}, "store": {"sqlite_exclusive": False}}
    live = LiveServer(tmp_path, sections).start()
    yield live
    live.stop()


def _stored(server: LiveServer, interaction_id: str) -> tuple[str, bytes]:
    """The status and event log once the interaction is no longer in progress."""
    deadline = time.monotonic() + 60
    with sqlite3.connect(server.data_dir / "openinteractions.db") as db:
        while time.monotonic() < deadline:
            row = db.execute("SELECT status, events FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
            if row is not None and row[0] != "in_progress":
                return row[0], row[1]
            time.sleep(0.05)
    raise TimeoutError(interaction_id)


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
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM restarts from VmRSS: the peak from here on
    readers = [_stalled(server.port, "GET", f"/v1beta/interactions/{interaction_id}?stream=true") for _ in range(20)]
    for reader in readers:
        assert reader.recv(16).startswith(b"HTTP/1.1 200")  # its response has begun
    _until_idle(pid)  # each reader has had what it will get before its client reads more
    grew = _status(pid, "VmHWM") - before
    for reader in readers:
        reader.close()
    assert grew < 100 * MB, f"20 stalled readers took {grew / MB:.0f} MB"


def test_a_run_past_its_log_limit_with_a_stalled_client_peaks_at_a_few_times_its_log(server: LiveServer) -> None:
    """A streaming create whose output runs past limits.max_event_log_bytes (64 MiB) while its client reads
    nothing. Storing its result took copies of the log and of its text: the frames, their join, SQLite's
    copy of the bound blob and of the row's record, the assembled steps and their JSON: +470 MB (7x the log).
    The log now goes to SQLite from its frames through incremental blob I/O: +270 MB (4x)."""
    assert server.process is not None
    pid = server.process.pid
    before = _status(pid, "VmRSS")
    body = json.dumps({"model": MODEL, "input": _script(70), "stream": True}).encode()
    client = _stalled(server.port, "POST", "/v1beta/interactions", body)
    head = client.recv(4096).decode(errors="replace")
    interaction_id = head.split('"id":"', 1)[1].split('"', 1)[0]
    status, blob = _stored(server, interaction_id)
    grew = _status(pid, "VmHWM") - before
    client.close()
    assert status == "failed"
    frames = split_frames(blob)
    assert abs(len(blob) - 64 * 2**20) < 64 * 1024  # the limit, give or take a delta and the closing events
    assert frames[-1].startswith(b"event: error\n") and b"resource_exhausted" in frames[-1]
    ids = [json.loads(frame.split(b"data: ", 1)[1])["event_id"] for frame in frames]
    assert ids == [str(n) for n in range(1, len(frames) + 1)]  # written in pieces, whole and in order
    assert grew < 370 * MB, f"the run's peak was {grew / MB:.0f} MB over the server's RSS before it"
