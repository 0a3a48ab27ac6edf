"""A memory cgroup per sandbox run, so that the sandbox's memory is bounded as a whole, not per process.

Runs get a cgroup of their own under ``openinteractions`` in the server's own memory cgroup (never elsewhere in
the machine's hierarchy: the limits above the server still hold, and nothing of the machine's own cgroups is
touched). cgroup v1's memory controller where the server may write to it (as root); cgroup v2 where the server's
cgroup has, or may be given, the memory controller for its children, which v2 refuses while the cgroup holds
processes of its own (the server) unless it is a root. The v2 path follows the kernel's rules but is untested
here: the machines this was built on have cgroup v1. The run's processes join it
before they exec; afterwards anything left in it is killed and it is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from pathlib import Path

FOLDER = "openinteractions"
_runs = itertools.count()


class CgroupUnavailable(Exception):
    pass


class MemoryCgroups:
    """Where this server makes its runs' memory cgroups."""

    def __init__(self, base: Path, version: int) -> None:
        self.base = base  # the server's own memory cgroup
        self.version = version

    @classmethod
    def find(cls, root: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")) -> MemoryCgroups:
        """The server's memory cgroup, if runs can have cgroups under it; CgroupUnavailable says why not."""
        lines = [line.split(":", 2) for line in own.read_text().splitlines()]
        for _, controllers, path in lines:
            if "memory" in controllers.split(",") and (root / "memory").is_dir():
                return cls._usable(root / "memory" / path.lstrip("/"), 1)
        for hierarchy, _, path in lines:
            if hierarchy == "0":
                unified = root if (root / "cgroup.controllers").exists() else root / "unified"
                return cls._usable(unified / path.lstrip("/"), 2)
        raise CgroupUnavailable("no memory cgroup controller is mounted")

    @classmethod
    def _usable(cls, base: Path, version: int) -> MemoryCgroups:
        if version == 2:
            controllers = (base / "cgroup.controllers").read_text().split() if base.is_dir() else []
            if "memory" not in controllers:
                raise CgroupUnavailable(f"the memory controller is not delegated to {base} (cgroup v2)")
        if not os.access(base, os.W_OK):
            raise CgroupUnavailable(f"{base} is not writable by this server (cgroup v{version})")
        cgroups = cls(base, version)
        try:
            cgroups.create(64 * 1024 * 1024).remove_now()  # what each run will do, tried once at start
        except OSError as exc:
            raise CgroupUnavailable(f"cannot make a cgroup under {base}: {exc}") from exc
        return cgroups

    def create(self, limit: int) -> RunCgroup:
        """A new cgroup for one run, limited to ``limit`` bytes of memory (with kernel memory; without swap)."""
        folder = self.base / FOLDER
        path = folder / f"{os.getpid()}-{next(_runs)}"
        for _ in range(3):  # another server may remove ``openinteractions`` while it is empty
            try:
                if self.version == 2:
                    self._delegate(folder)
                path.mkdir(parents=True)
                break
            except FileNotFoundError:
                continue
        run = RunCgroup(path, self.version)
        try:
            run.limit(limit)
        except (OSError, CgroupUnavailable):
            run.remove_now()
            raise
        return run

    def _delegate(self, folder: Path) -> None:
        """cgroup v2: the memory controller for ``openinteractions`` and for its children."""
        enabled = (self.base / "cgroup.subtree_control").read_text().split()
        if "memory" not in enabled:
            # Refused (EBUSY) while the server's own cgroup holds processes: v2 allows none beside children.
            _write(self.base / "cgroup.subtree_control", "+memory")
        folder.mkdir(exist_ok=True)
        _write(folder / "cgroup.subtree_control", "+memory")


class RunCgroup:
    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version
        self._procs = str(path / "cgroup.procs")  # ready for join(), which runs between fork and exec

    def limit(self, limit: int) -> None:
        if self.version == 2:
            _write(self.path / "memory.max", str(limit))
            _write(self.path / "memory.swap.max", "0", optional=True)
            return
        _write(self.path / "memory.limit_in_bytes", str(limit))
        # Swap may not extend it; kernel memory, which v1 counts apart as well, and TCP buffers are bounded too.
        for name in ("memory.memsw.limit_in_bytes", "memory.kmem.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes"):
            _write(self.path / name, str(limit), optional=True)

    def join(self) -> None:
        """Move the calling process into the cgroup: called in the child before it execs."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def oom_kills(self) -> int:
        """How many of the run's processes the kernel killed for want of memory in this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    async def remove(self, deadline: float = 5.0) -> None:
        """Kill what is left of the run (a process that left the process group) and remove the cgroup."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            try:
                self.remove_now()
                return
            except OSError:
                if loop.time() > end:
                    raise
            await asyncio.sleep(0.01)

    def remove_now(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.path.rmdir()  # EBUSY until the killed processes have exited
        with contextlib.suppress(OSError):  # still in use by another run, or by another server
            self.path.parent.rmdir()

    def _pids(self) -> list[int]:
        try:
            return [int(pid) for pid in Path(self._procs).read_text().split()]
        except FileNotFoundError:
            return []


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        # A file this kernel lacks (no swap accounting) or refuses (v1's kmem limit on some kernels).
        if not optional:
            raise CgroupUnavailable(f"cannot write {value} to {path}: {exc}") from exc
