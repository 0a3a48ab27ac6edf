"""Server memory with clients that stop reading: stalled replays of a stored log, and a run over its log limit.

Run: python bench/stalled_memory.py [replay|overlimit|both] [--readers 20] [--mb 10]. Starts the server on a
loopback port (scripted model), measures its RSS from /proc/<pid>/status (VmRSS, VmHWM) and prints:

- replay: a stored interaction of about --mb MB, then --readers ``GET ?stream=true`` whose clients never read;
  the RSS they add, in all and per reader, once it has settled.
- overlimit: one streaming create whose output runs past limits.max_event_log_bytes (64 MiB by default) while
  its client never reads; the peak RSS (VmHWM) over the RSS before it, until the run is stored as failed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from live import LiveServer

MODEL = "m"
WORDS = ("lorem ipsum dolor sit amet " * 400).strip()  # ~10.8 KB a text delta


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def stalled_request(port: int, method: str, path: str, body: bytes = b"") -> socket.socket:
    """A request whose client reads nothing: a small receive buffer, never drained."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    sock.sendall(head.encode() + b"content-length: %d\r\n\r\n" % len(body) + body)
    return sock


def settle(pid: int, seconds: float = 1.0, deadline: float = 60.0) -> int:
    """The RSS once it stops moving by more than 1 MB over ``seconds``."""
    end = time.monotonic() + deadline
    last = proc_status(pid)["VmRSS"]
    while time.monotonic() < end:
        time.sleep(seconds)
        now = proc_status(pid)["VmRSS"]
        if abs(now - last) < 1 << 20:
            return now
        last = now
    return last


def server(workdir: Path) -> LiveServer:
    # Not the exclusive SQLite file: the run's end is read from the database, which costs the server nothing
    # (a GET of the running interaction would render all of it, and count in its peak).
    sections = {f"models.{MODEL}": {"backend": "scripted", "inline": True}, "store": {"sqlite_exclusive": False}}
    return LiveServer(workdir, sections).start()


def stored_status(live: LiveServer, interaction_id: str, timeout: float = 120.0) -> str:
    """The interaction's stored status once it is no longer in_progress."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(live.data_dir / "openinteractions.db") as db:
        while time.monotonic() < deadline:
            row = db.execute("SELECT status FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
            if row is not None and row[0] != "in_progress":
                return str(row[0])
            time.sleep(0.05)
    raise TimeoutError(f"{interaction_id} still in progress after {timeout:g} s")


def replay(readers: int, megabytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        live = server(Path(tmp))
        assert live.process is not None
        pid = live.process.pid
        try:
            script = {"script": [{"repeat": megabytes * 1_000_000 // len(WORDS), "events": [{"text": WORDS}]}]}
            with live.http(timeout=120) as http:
                created = http.post("/v1beta/interactions", json={"model": MODEL, "input": json.dumps(script)})
                interaction_id = created.json()["id"]
                size = len(http.get(f"/v1beta/interactions/{interaction_id}?stream=true").content)
            before = settle(pid)
            sockets = [stalled_request(live.port, "GET", f"/v1beta/interactions/{interaction_id}?stream=true")
                       for _ in range(readers)]  # fmt: skip
            after = settle(pid)
            peak = proc_status(pid)["VmHWM"]
            print(f"replay: log {size / 1e6:.1f} MB, {readers} stalled readers: RSS {before / 1e6:.0f} -> "
                  f"{after / 1e6:.0f} MB (+{(after - before) / 1e6:.0f} MB, "
                  f"{(after - before) / readers / 1e6:.2f} MB a reader); peak {peak / 1e6:.0f} MB")  # fmt: skip
            for sock in sockets:
                sock.close()
        finally:
            live.stop()


def overlimit() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        live = server(Path(tmp))
        assert live.process is not None
        pid = live.process.pid
        try:
            before = settle(pid)
            script = {"script": [{"repeat": 70_000_000 // len(WORDS), "events": [{"text": WORDS}]}]}
            body = json.dumps({"model": MODEL, "input": json.dumps(script), "stream": True}).encode()
            sock = stalled_request(live.port, "POST", "/v1beta/interactions", body)
            sock.settimeout(30)
            head = sock.recv(4096).decode(errors="replace")
            interaction_id = head.split('"id":"', 1)[1].split('"', 1)[0]
            started = time.monotonic()
            status = stored_status(live, interaction_id)
            took = time.monotonic() - started
            peak = proc_status(pid)["VmHWM"]
            print(f"overlimit: run {status} after {took:.1f} s; RSS before {before / 1e6:.0f} MB, peak "
                  f"{peak / 1e6:.0f} MB (+{(peak - before) / 1e6:.0f} MB)")  # fmt: skip
            sock.close()
        finally:
            live.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["replay", "overlimit", "both"], nargs="?", default="both")
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--mb", type=int, default=10)
    args = parser.parse_args()
    if args.scenario in ("replay", "both"):
        replay(args.readers, args.mb)
    if args.scenario in ("overlimit", "both"):
        overlimit()


if __name__ == "__main__":
    main()
