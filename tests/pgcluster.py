"""A PostgreSQL cluster of a test's own, which the test may restart or stop without disturbing any other test:
initdb'd into a temporary folder, listening only on a unix socket there, owned by the postgres user (the
server refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.sockets = folder / "sockets"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.sockets}"

    def _ctl(self, *args: str) -> None:
        options = f"-k {self.sockets} -c listen_addresses='' -c fsync=off"
        _as_postgres(str(_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                     str(self.folder / "log"), *args)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self) -> None:
        """Every connection is cut, as when a database server restarts: ``immediate`` is a crash restart."""
        self.stop("immediate")
        self.start()


def _as_postgres(*command: str) -> None:
    user = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    subprocess.run(command, check=True, capture_output=True, preexec_fn=drop if os.getuid() == 0 else None)


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="oi-pg-"))
    cluster = Cluster(folder)
    try:
        cluster.sockets.mkdir()
        if os.getuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (folder, cluster.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        _as_postgres(str(_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
