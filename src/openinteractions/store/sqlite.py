"""SQLite, the embedded default: the store's file, and the settings every connection to it gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL


def sqlite_url(data_dir: Path, exclusive: bool = True) -> URL:
    """``exclusive``: SQLite's unix-excl VFS, which locks the file for this process and keeps the WAL index in
    its memory instead of a shared-memory file locked with fcntl around every transaction (six lock calls a
    commit). One server per database is then enforced (a second one would mark the first one's running
    interactions failed at startup), and an insert and its result cost ~95 instead of ~107 us; other
    processes cannot open the file while the server runs."""
    path = str(data_dir / "openinteractions.db")
    if not exclusive:
        return URL.create("sqlite", database=path)
    # An SQLite URI: '?', '#' and '%' in the path are escaped (URL.create passes the name on as it is).
    return URL.create("sqlite", database=f"file:{quote(path)}", query={"vfs": "unix-excl", "uri": "true"})


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # the store runs checkpoints in its writer thread
    cursor.execute("PRAGMA busy_timeout=30000")
    # Debian's SQLite zeroes every freed page (secure_delete=ON), so a run's result, which rewrites its row with
    # the input in it, wrote the input three times (8 MiB in: 48 MiB of WAL). FAST zeroes what is written anyway;
    # freed pages keep their bytes until reused, as with SQLite's default elsewhere, and as the WAL's own frames
    # keep them until overwritten whatever this setting says.
    cursor.execute("PRAGMA secure_delete=FAST")
    cursor.close()
