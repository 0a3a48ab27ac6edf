"""Running model-written Python in a sandbox made of bubblewrap and resource limits.

What it guarantees (see docs/tools.md for the full list):
- no network: the code runs in its own network namespace, which has nothing but its own loopback;
- no host files: the root is a fresh tmpfs with only /usr (read-only), /proc, /dev and a scratch directory
  (writable, removed afterwards); /etc, /home, /root, /work and the server's data are not there;
- its own PID, IPC, UTS, cgroup and user namespaces; all capabilities dropped; no new privileges;
- when the server runs as root, the code runs as an unprivileged user (``nobody`` by default);
- limits: CPU seconds, wall seconds (the whole process group is killed), address space, process count,
  file size, and output size (the process is killed once its output is over the limit).
What it does not: it shares the host kernel (a kernel exploit escapes), and reading /usr (system libraries,
the Python standard library) is allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_mb: int = 512
    max_processes: int = 32
    max_file_mb: int = 16
    max_output_bytes: int = 64 * 1024


@dataclass
class Execution:
    stdout: str
    stderr: str
    exit_code: int | None
    problem: str | None  # why it did not finish normally (timeout, output limit, signal...), or None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.exit_code == 0


class SandboxUnavailable(Exception):
    pass


class Sandbox:
    def __init__(
        self,
        limits: SandboxLimits,
        scratch_root: Path,
        *,
        python: str = "/usr/bin/python3",
        bwrap: str = "bwrap",
        user: int = 65534,
        concurrency: int = 2,
    ) -> None:
        self.limits = limits
        self.scratch_root = scratch_root
        self.python = python
        self.bwrap = shutil.which(bwrap) or bwrap
        self.user = user
        self._slots = asyncio.Semaphore(concurrency)

    def check(self) -> None:
        """Raise SandboxUnavailable unless everything the sandbox needs is on this machine."""
        if not shutil.which(self.bwrap):
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed; apt-get install bubblewrap")
        if not Path(self.python).is_file():
            raise SandboxUnavailable(f"no Python interpreter at {self.python} (tools.code_execution.python)")
        if os.geteuid() == 0 and not shutil.which("setpriv"):
            raise SandboxUnavailable("setpriv (util-linux) is needed to drop root for the sandbox")

    def _command(self, scratch: Path) -> list[str]:
        command = []
        if os.geteuid() == 0:
            command += [
                "setpriv",
                f"--reuid={self.user}",
                f"--regid={self.user}",
                "--clear-groups",
                "--no-new-privs",
                "--",
            ]
        command += [
            self.bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--bind", str(scratch), "/scratch", "--chdir", "/scratch",
            "--clearenv", "--setenv", "PATH", "/usr/bin", "--setenv", "HOME", "/scratch",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONIOENCODING", "utf-8",
            "--", self.python, "-I", "main.py",
        ]  # fmt: skip
        return command

    def _limit(self) -> None:
        """In the child, before exec: limits that every process of the sandbox inherits."""
        limits = self.limits
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        size = limits.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    async def run_python(self, code: str) -> Execution:
        async with self._slots:
            # The sandbox user must reach its scratch folder, so its parent is traversable (not listable).
            self.scratch_root.mkdir(parents=True, exist_ok=True)
            self.scratch_root.chmod(0o711)
            scratch = Path(tempfile.mkdtemp(prefix="run-", dir=self.scratch_root))
            try:
                (scratch / "main.py").write_text(code)
                if os.geteuid() == 0:
                    os.chown(scratch, self.user, self.user)
                    os.chown(scratch / "main.py", self.user, self.user)
                return await self._execute(scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    async def _execute(self, scratch: Path) -> Execution:
        process = await asyncio.create_subprocess_exec(
            *self._command(scratch),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=self._limit,
            start_new_session=True,
        )
        output = _Output(self.limits.max_output_bytes, on_full=lambda: _kill_group(process))
        problem: str | None = None
        try:
            async with asyncio.timeout(self.limits.wall_seconds):
                await asyncio.gather(output.read(process.stdout, 0), output.read(process.stderr, 1))
                if output.full:
                    problem = f"output reached the limit of {self.limits.max_output_bytes} bytes"
                else:
                    await process.wait()
        except TimeoutError:
            problem = f"timed out after {self.limits.wall_seconds:g} s"
        finally:
            _kill_group(process)
            # A reader that stopped early left its pipe paused; read to the end so that the exit is seen.
            await asyncio.gather(_drain(process.stdout), _drain(process.stderr))
            await process.wait()
        code = process.returncode
        if problem is None and code is not None and (code < 0 or code > 128):
            problem = _signal_problem(-code if code < 0 else code - 128)  # bwrap reports 128 + signal
        stdout, stderr = output.text()
        return Execution(stdout, stderr, code, problem)


class _Output:
    """stdout and stderr, read together under one byte budget; what was read survives a timeout."""

    def __init__(self, budget: int, on_full: Callable[[], None]) -> None:
        self.budget = budget
        self.chunks: tuple[list[bytes], list[bytes]] = ([], [])
        self._on_full = on_full

    @property
    def full(self) -> bool:
        return self.budget <= 0

    async def read(self, stream: asyncio.StreamReader | None, which: int) -> None:
        assert stream is not None
        while self.budget > 0:
            chunk = await stream.read(min(65536, self.budget))
            if not chunk:
                return
            self.budget -= len(chunk)
            self.chunks[which].append(chunk)
        if self.budget <= 0:
            self._on_full()  # the other stream then ends too

    def text(self) -> tuple[str, str]:
        out, err = (b"".join(c).decode(errors="replace") for c in self.chunks)
        return out, err


async def _drain(stream: asyncio.StreamReader | None) -> None:
    if stream is not None:
        while await stream.read(65536):
            pass


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _signal_problem(number: int) -> str:
    if number == signal.SIGXCPU:
        return "CPU time limit reached"
    if number == signal.SIGKILL:
        return "killed (a resource limit was reached)"
    try:
        return f"killed by signal {signal.Signals(number).name}"
    except ValueError:
        return f"exited with status {128 + number}"
