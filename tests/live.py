"""A real server on a loopback port, in its own process, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))


class LiveServer:
    """``openinteractions serve`` as a subprocess; ready when uvicorn says it listens, on stderr."""

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]], env: dict[str, str] | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "config.toml"
        self.data_dir = workdir / "data"
        sections = {**sections, "store": {"data_dir": self.data_dir, **sections.get("store", {})}}
        write_config(self.config, sections)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def index(self, *paths: Path) -> str:
        """Fill the local search index through the CLI, as an operator would."""
        result = subprocess.run(
            [sys.executable, "-m", "openinteractions", "index", "add", *map(str, paths), "--config", str(self.config)],
            capture_output=True, text=True, env=self.env, check=True,
        )  # fmt: skip
        return result.stdout

    def start(self) -> LiveServer:
        self.log = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "openinteractions", "serve", "--config", str(self.config), "--port", str(self.port)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if "Uvicorn running on" in line:  # logged once the socket is bound, after the startup
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Like a crash: no shutdown at all."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kwargs})

    def db_rows(self) -> list[tuple[Any, ...]]:
        """Every stored row, to prove that a request changed nothing."""
        with sqlite3.connect(self.data_dir / "openinteractions.db") as db:
            return db.execute("SELECT * FROM interactions ORDER BY id").fetchall()


def sse_events(text: str) -> list[dict[str, Any] | str]:
    """Parse an SSE body into its data payloads (JSON objects, or the raw string such as '[DONE]')."""
    out: list[dict[str, Any] | str] = []
    for block in text.split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            joined = "\n".join(data)
            out.append(joined if joined == "[DONE]" else json.loads(joined))
    return out
