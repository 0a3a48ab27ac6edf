"""SQLite keeps the events table WITHOUT ROWID (one b-tree, one page less a commit); a database whose events
table was made with a rowid gets it rebuilt at start, its rows kept."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from openinteractions.store.sql import SqlStore
from openinteractions.store.sqlite import sqlite_url


def _events_sql(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()[0])


def test_an_events_table_made_with_a_rowid_is_rebuilt_without_one_and_keeps_its_rows(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path, exclusive=False)
    path = tmp_path / "openinteractions.db"

    async def start_and_close() -> None:
        store = SqlStore(url)
        await store.start()
        await store.close()

    asyncio.run(start_and_close())
    assert "WITHOUT ROWID" in _events_sql(path)
    with sqlite3.connect(path) as db:  # the table as an earlier version made it, with the rows of two runs
        db.execute("DROP TABLE events")
        db.execute("CREATE TABLE events (interaction_id VARCHAR(64) NOT NULL, seq INTEGER NOT NULL, "
                   "frame BLOB NOT NULL, PRIMARY KEY (interaction_id, seq))")  # fmt: skip
        rows = [("a", seq, f"event: e\ndata: {seq}\n\n".encode()) for seq in (1, 2, 3)] + [("b", 1, b"x")]
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
    assert "WITHOUT ROWID" not in _events_sql(path)

    async def scenario() -> None:
        store = SqlStore(url)
        await store.start()
        assert await store.run_events("a") == [frame for _, _, frame in rows[:3]]
        assert await store.run_events("b") == [b"x"]
        store.append_event("b", 2, b"y")
        await store.close()
        again = SqlStore(url)
        await again.start()  # a second start finds it rebuilt
        assert await again.run_events("b") == [b"x", b"y"]
        await again.close()

    asyncio.run(scenario())
    assert "WITHOUT ROWID" in _events_sql(path)
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "events_rebuilt" not in names
