"""Replicas and live streams for bench/replicas.py: servers on one PostgreSQL database, a lean reader of
``GET ?stream=true`` that times each event's arrival, and a LISTEN that times each event's commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import loadgen
from servers import free_port, wait_for_port

MODEL = "bench-scripted"


# ---- replicas ---------------------------------------------------------------------------------------------


class Replica:
    """``openinteractions serve`` in a process of its own, its stderr kept in a file."""

    def __init__(self, name: str, workdir: Path, url: str, grace: float, claim: float) -> None:
        self.name, self.port = name, free_port()
        folder = workdir / f"{name}-{self.port}"
        folder.mkdir()
        self.config, self.log = folder / "config.toml", folder / "stderr.log"
        self.config.write_text(
            f'[store]\ndata_dir = "{folder / "data"}"\nurl = "{url}"\nreplica_grace_seconds = {grace}\n'
            # Some 100,000 stored runs of one owner: not a quota test.
            "max_interactions_per_owner = 100000000\nmax_bytes_per_owner = 1099511627776\n"
            '[server]\nlog_level = "warning"\n'
            f"[limits]\ncreate_rate_per_second = 0\nmax_concurrent_runs = 0\nrun_claim_seconds = {claim}\n"
            f'[models.{MODEL}]\nbackend = "scripted"\ninline = true\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        args = [sys.executable, "-m", "openinteractions", "serve", "--config", str(self.config)]
        args += ["--port", str(self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def continued(self) -> set[str]:
        """The interactions this replica took over from another (its log says so)."""
        pattern = r"interaction (\S+) was left unfinished by server \S+: continuing it"
        return set(re.findall(pattern, self.log.read_text()))


@contextlib.contextmanager
def scratch_database(admin: str) -> Iterator[tuple[str, str]]:
    """A database of this run's own: (its psycopg conninfo, its SQLAlchemy URL); dropped afterwards."""
    name = f"oi_replbench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(admin, dbname=name)
    p = psycopg.conninfo.conninfo_to_dict(dsn)
    url = f"postgresql+psycopg://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{name}"
    try:
        yield dsn, url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def cluster(make: Any, count: int) -> Iterator[list[Replica]]:
    """``count`` replicas, started one after the other (the first creates the tables)."""
    replicas: list[Replica] = []
    try:
        for name in "abc"[:count]:
            replicas.append(make(name).start())
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def server_troubles(workdir: Path) -> list[str]:
    """Every replica's log lines at ERROR or above, and tracebacks (warnings are expected: takeovers)."""
    lines = []
    for log in sorted(workdir.rglob("stderr.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(("ERROR", "CRITICAL", "Traceback")):
                lines.append(f"{log.parent.name}: {line}")
    return lines


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Maker:
    """Makes replicas of one database and one configuration."""

    def __init__(self, workdir: Path, dsn: str, url: str, claim: float) -> None:
        self.workdir, self.dsn, self.url, self.claim = workdir, dsn, url, claim

    def __call__(self, name: str, grace: float = 3.0) -> Replica:
        return Replica(name, self.workdir, self.url, grace, self.claim)


# ---- live streams, commits -------------------------------------------------------------------------------


@dataclass
class Stream:
    """One ``GET ?stream=true``: each event's id, type, text and arrival (perf_counter)."""

    ids: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    attached: float = float("inf")  # when the response's status line came
    done: bool = False  # [DONE] came
    error: str = ""

    def at(self) -> dict[int, float]:
        return dict(zip(self.ids, self.arrived, strict=True))

    def whole(self) -> bool:
        return self.done and self.ids == list(range(1, len(self.ids) + 1))


async def follow(port: int, interaction_id: str, stream: Stream) -> None:
    """Read the stream on raw asyncio (an HTTP client costs more CPU than the events measured here)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET /v1beta/interactions/{interaction_id}?stream=true HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "accept: text/event-stream\r\nconnection: close\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            stream.error = status.decode(errors="replace").strip()
            return
        stream.attached = time.perf_counter()
        chunked, _ = await loadgen.read_headers(reader)
        pending = b""
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            elif not (data := await reader.read(65536)):
                return
            now = time.perf_counter()
            *frames, pending = (pending + data).split(b"\n\n")
            for frame in frames:
                _frame(frame, now, stream)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
        stream.error = f"cut: {exc!r}"
    finally:
        writer.close()


def _frame(frame: bytes, now: float, stream: Stream) -> None:
    for line in frame.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            stream.done = True
            continue
        event = json.loads(line[6:])
        stream.ids.append(int(event["event_id"]))
        stream.types.append(event["event_type"])
        stream.text.append(event.get("delta", {}).get("text", "") if event["event_type"] == "step.delta" else "")
        stream.arrived.append(now)


class Commits:
    """This script's own LISTEN on the channel of committed events: when each event's commit was heard."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.heard: dict[str, list[tuple[int, float]]] = {}
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Commits:
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        await conn.execute("LISTEN oi_events")
        self.task = asyncio.create_task(self._listen(conn))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            async for note in conn.notifies():
                interaction_id, _, what = note.payload.partition(" ")
                if what.isdigit():
                    self.heard.setdefault(interaction_id, []).append((int(what), time.perf_counter()))
        finally:
            await conn.close()

    def committed(self, interaction_id: str) -> dict[int, float]:
        """Event id → when the notification of the commit that made it durable came."""
        at: dict[int, float] = {}
        last = 0
        for seq, when in self.heard.get(interaction_id, []):
            for event_id in range(last + 1, seq + 1):
                at[event_id] = when
            last = max(last, seq)
        return at
