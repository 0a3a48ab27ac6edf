"""Start servers for benchmarks as subprocesses on loopback ports, and stop them."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


@contextlib.contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``args`` until the block ends; it is ready once something accepts connections on ``port``."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, env=env)
    try:
        _wait_for_port(port, proc)
        yield
    finally:
        proc.terminate()
        proc.wait(15)


def openinteractions(config: Path, port: int) -> contextlib.AbstractContextManager[None]:
    args = [sys.executable, "-m", "openinteractions", "serve", "--config", str(config), "--port", str(port)]
    return process(args, port)
