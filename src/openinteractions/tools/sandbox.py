"""Running model-written Python in a sandbox made of bubblewrap, a seccomp filter and resource limits.

What it guarantees (see docs/tools.md for the full list):
- no network: the code runs in its own network namespace, which has nothing but its own loopback;
- no host files and nothing on the host to squat: the root is a read-only tmpfs with only /usr (read-only, less
  /usr/local and /usr/src, where a deployment keeps its own files), /proc, /dev and /scratch, a tmpfs of
  ``disk_mb`` (the working directory, /tmp points to it) into which bubblewrap copies the program from a file
  descriptor; /etc (but for ``ETC_SHOWN``: Debian's links into /usr, font and matplotlib settings), /home, /root,
  /work and the server's data are not there;
- no secrets: bubblewrap and setpriv start with an empty environment, the program with a fixed one;
- its own PID, IPC, UTS, cgroup and user namespaces, no further user namespaces (``--disable-userns``); all
  capabilities dropped; no new privileges; the seccomp filter of syscall_filter.py;
- when the server runs as root, the code runs as an unprivileged user (``nobody`` by default);
- limits: CPU seconds, wall seconds (the whole process group is killed), address space, process count,
  file size, open files, the size of each writable file system, and output size (the process is killed once its
  output is over the limit);
- memory for the whole sandbox (``sandbox_memory_mb``, kernel memory included) where the server can make memory
  cgroups (cgroup.py); elsewhere only per process, ``memory_mb`` x ``max_processes`` in all, said once at start.
What it does not: it shares the host kernel (a kernel exploit escapes), and reading /usr (system libraries, the
Python standard library) is allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .cgroup import CgroupUnavailable, MemoryCgroups, RunCgroup
from .syscall_filter import compile_filter

log = logging.getLogger(__name__)
MiB = 1024 * 1024

# Folders of /usr that hold the machine's own software and configuration rather than the distribution's: the
# sandbox sees them empty, but for the files of an interpreter configured there.
HIDDEN = ("/usr/local", "/usr/src")
# What the sandbox sees of /etc: Debian's links that pick some libraries (numpy's BLAS), which point into /usr,
# and the font and matplotlib settings that charts need. Nothing else of the host's configuration.
ETC_SHOWN = ("/etc/alternatives", "/etc/fonts", "/etc/matplotlibrc")
# What an interpreter needs of its own prefix, printed by itself.
LAYOUT = (
    "import json, os, sys, sysconfig; v = sysconfig.get_config_var; lib = os.path.join(v('LIBDIR') or '/',"
    " v('LDLIBRARY') or '.'); paths = {sysconfig.get_path(k) for k in ('stdlib', 'platstdlib', 'purelib', 'platlib')};"
    " print(json.dumps(sorted({sys.executable, os.path.realpath(sys.executable), lib, *paths})))"
)

# Runs main.py, then writes the files named after the descriptor (argv[1]) into it, each as "name size\n" and its
# bytes: what the program made (a chart) comes back without passing through its output.
COLLECT = (
    "import os, runpy, sys\n"
    "fd, names = int(sys.argv[1]), sys.argv[2:]\n"
    "sys.argv = ['main.py']\n"
    "try:\n"
    "    runpy.run_path('main.py', run_name='__main__')\n"
    "finally:\n"
    "    for name in names:\n"
    "        try:\n"
    "            data = open(name, 'rb').read()\n"
    "        except OSError:\n"
    "            continue\n"
    "        os.write(fd, b'%s %d\\n' % (name.encode(), len(data)) + data)\n"
)

# What the sandbox's own start must show, read by a probe run in it when the server starts.
PROBE = (
    "import sys; s = open('/proc/self/status').read();"
    "sys.exit(0 if 'NoNewPrivs:\\t1' in s and 'Seccomp:\\t2' in s else 3)"
)


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_mb: int = 512
    max_processes: int | None = None  # None: 32 where a memory cgroup bounds the whole sandbox, else 8
    max_file_mb: int = 16
    max_output_bytes: int = 64 * 1024
    disk_mb: int = 64
    max_open_files: int = 64
    sandbox_memory_mb: int = 1024  # all the sandbox's processes and its tmpfs together, where cgroups can be made


@dataclass
class Execution:
    stdout: str
    stderr: str
    exit_code: int | None
    problem: str | None  # why it did not finish normally (timeout, output limit, signal...), or None
    files: dict[str, bytes] = field(default_factory=dict)  # those asked for that the program wrote

    @property
    def ok(self) -> bool:
        return self.problem is None and self.exit_code == 0


class SandboxUnavailable(Exception):
    pass


class Sandbox:
    def __init__(
        self,
        limits: SandboxLimits,
        *,
        python: str = "/usr/bin/python3",
        bwrap: str = "bwrap",
        init: str = "/usr/bin/tini",
        user: int = 65534,
        concurrency: int = 2,
    ) -> None:
        self.limits = limits
        self.python = python
        self.bwrap = shutil.which(bwrap) or bwrap
        self.setpriv = shutil.which("setpriv") or "setpriv"
        self.init = init
        self.user = user
        self._slots = asyncio.Semaphore(concurrency)
        self._filter = b""
        self._hidden = [folder for folder in HIDDEN if os.path.isdir(folder)]
        self._shown: list[str] = []  # what the interpreter needs of the hidden folders
        self._cgroups: MemoryCgroups | None = None

    def check(self) -> None:
        """Raise SandboxUnavailable unless the sandbox starts here with every protection it promises."""
        if not shutil.which(self.bwrap):
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed; apt-get install bubblewrap")
        if not self.python.startswith("/usr/") or not os.path.isfile(self.python):
            raise SandboxUnavailable(f"no Python interpreter under /usr at {self.python} (tools.code_execution.python)")
        if not os.access(self.init, os.X_OK):
            raise SandboxUnavailable(f"tini, the sandbox's init, is not at {self.init}; apt-get install tini")
        if os.geteuid() == 0 and not shutil.which(self.setpriv):
            raise SandboxUnavailable("setpriv (util-linux) is needed to drop root for the sandbox")
        try:
            self._filter = compile_filter()
        except ImportError as exc:
            raise SandboxUnavailable(
                "the libseccomp Python bindings are missing (Debian: apt-get install python3-seccomp;"
                " scripts/install links them into .venv)"
            ) from exc
        self._shown = self._interpreter_files()
        try:
            self._cgroups = MemoryCgroups.find()
        except (OSError, CgroupUnavailable) as exc:
            self._cgroups = None
            log.warning(
                "code_execution: no memory cgroup can be made here (%s); the sandbox's memory is bounded per process"
                " only, up to memory_mb x max_processes = %d MiB per run",
                exc,
                self.limits.memory_mb * self.max_processes,
            )
        self._probe()

    @property
    def max_processes(self) -> int:
        if self.limits.max_processes is not None:
            return self.limits.max_processes
        # Without a cgroup each process may hold memory_mb: fewer processes bound the whole.
        return 32 if self._cgroups is not None else 8

    def _interpreter_files(self) -> list[str]:
        """The interpreter's own files in the hidden folders, if it lives there, to bind back read-only."""
        if not any(_under(os.path.realpath(self.python), folder) for folder in self._hidden):
            return []
        try:
            done = subprocess.run(
                [self.python, "-I", "-c", LAYOUT], env={}, capture_output=True, text=True, timeout=30, check=True
            )
            paths: list[str] = json.loads(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise SandboxUnavailable(f"{self.python} did not say where its standard library is: {exc}") from exc
        hidden = [path for path in paths if any(_under(path, folder) for folder in self._hidden)]
        return [path for path in hidden if os.path.exists(path)]

    def _probe(self) -> None:
        with _memfd("main.py", PROBE.encode()) as program, _memfd("filter", self._filter) as bpf:
            try:
                done = subprocess.run(
                    self._command(program, bpf),
                    env={},
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    pass_fds=(program, bpf),
                    preexec_fn=self._limit,
                    timeout=max(self.limits.wall_seconds, 10.0),
                )
            except subprocess.TimeoutExpired as exc:
                raise SandboxUnavailable("the sandbox did not start in time") from exc
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()[-500:]
            raise SandboxUnavailable(f"the sandbox does not start here (status {done.returncode}): {said}")

    def _command(self, program: int, bpf: int, collect: tuple[int, tuple[str, ...]] | None = None) -> list[str]:
        command = []
        if os.geteuid() == 0:
            command += [
                self.setpriv,
                f"--reuid={self.user}",
                f"--regid={self.user}",
                "--clear-groups",
                "--no-new-privs",
                "--",
            ]
        disk = str(self.limits.disk_mb * 1024 * 1024)
        command += [
            # bubblewrap's own pid 1 outlives it, a zombie left to the host's init (containers/bubblewrap#697)
            # that counts against max_processes until reaped: tini is pid 1 instead, and bubblewrap waits for it.
            self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1", "--die-with-parent",
            "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for path in ETC_SHOWN:
            command += ["--ro-bind-try", path, path]
        for folder in self._hidden:
            command += ["--perms", "0755", "--tmpfs", folder]
        for path in self._shown:
            command += ["--ro-bind", path, path]
        for folder in self._hidden:
            command += ["--remount-ro", folder]
        command += [
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--proc", "/proc", "--dev", "/dev",
            "--size", disk, "--perms", "0700", "--tmpfs", "/scratch", "--symlink", "scratch", "/tmp",
            # /dev/shm (POSIX semaphores and shared memory) is the only other writable file system.
            "--size", disk, "--perms", "0700", "--tmpfs", "/dev/shm",
            "--perms", "0600", "--file", str(program), "/scratch/main.py",
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", "/scratch",
            "--clearenv", "--setenv", "PATH", "/usr/bin", "--setenv", "HOME", "/scratch",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONIOENCODING", "utf-8",
            "--seccomp", str(bpf),
            "--", self.init, "--", self.python, "-I",
        ]  # fmt: skip
        if collect is None:
            return [*command, "main.py"]
        descriptor, names = collect
        return [*command, "-c", COLLECT, str(descriptor), *names]

    def _limit(self) -> None:
        """In the child, before exec: limits that every process of the sandbox inherits."""
        limits = self.limits
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.max_processes, self.max_processes))
        size = limits.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    async def run_python(self, code: str, collect: tuple[str, ...] = ()) -> Execution:
        """Run ``code``; the files of /scratch named in ``collect`` that it wrote come back in ``files`` (each
        within ``max_file_mb``)."""
        async with self._slots:
            # Nothing is written on the host: bubblewrap copies the program from this descriptor into /scratch.
            with (
                _memfd("main.py", code.encode()) as program,
                _memfd("filter", self._filter) as bpf,
                _memfd("files", b"") as files,
            ):
                execution = await self._contained(program, bpf, (files, collect) if collect else None)
                if collect and execution.ok:
                    execution.files = _collected(files, self.limits.max_file_mb * MiB)
                return execution

    async def _contained(self, program: int, bpf: int, collect: tuple[int, tuple[str, ...]] | None) -> Execution:
        if self._cgroups is None:
            return await self._execute(program, bpf, None, collect)
        try:
            cgroup = self._cgroups.create(self.limits.sandbox_memory_mb * MiB)
        except (OSError, CgroupUnavailable) as exc:
            return Execution("", "", None, f"the sandbox's memory cgroup could not be made: {exc}")
        try:
            return await self._execute(program, bpf, cgroup, collect)
        finally:
            await _remove(cgroup)

    async def _execute(
        self, program: int, bpf: int, cgroup: RunCgroup | None, collect: tuple[int, tuple[str, ...]] | None
    ) -> Execution:
        def prepare() -> None:
            if cgroup is not None:
                cgroup.join()  # before anything of the sandbox runs
            self._limit()

        process = await asyncio.create_subprocess_exec(
            *self._command(program, bpf, collect),
            # Nothing of the server's environment may reach the sandbox, whatever bubblewrap does with its own (its
            # PID 1 kept it, readable inside as /proc/1/environ).
            env={},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(program, bpf) if collect is None else (program, bpf, collect[0]),
            preexec_fn=prepare,
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
        if problem is None and cgroup is not None and cgroup.oom_kills():
            problem = f"memory limit reached ({self.limits.sandbox_memory_mb} MiB for the whole sandbox)"
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


@contextlib.contextmanager
def _memfd(name: str, data: bytes) -> Iterator[int]:
    """A descriptor of an anonymous file holding ``data``, read from its start; closed afterwards."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _collected(fd: int, limit: int) -> dict[str, bytes]:
    """The files the sandbox wrote into ``fd`` ("name size\\n" then the bytes, each); a truncated one is left out."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, min(size, 16 * limit), 0)
    files: dict[str, bytes] = {}
    while data:
        header, newline, rest = data.partition(b"\n")
        name, _, length = header.rpartition(b" ")
        if not newline or not length.isdigit() or int(length) > min(len(rest), limit):
            break
        files[name.decode(errors="replace")] = rest[: int(length)]
        data = rest[int(length) :]
    return files


async def _remove(cgroup: RunCgroup) -> None:
    try:
        await cgroup.remove()
    except OSError as exc:
        log.warning("code_execution: the run's cgroup %s could not be removed: %s", cgroup.path, exc)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


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
