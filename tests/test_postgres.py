"""The store on PostgreSQL (as on CI), reached through its unix socket: the suite runs in a network namespace
of its own, where 127.0.0.1:5432 is nobody. Servers sharing a database, and writes that survive the database
cutting the server's connections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from live import LiveServer
from pg import ADMIN, SOCKETS, scratch_database, url

MODEL = "gemini-3-flash-preview"


@pytest.fixture
def database() -> Iterator[str]:
    with scratch_database() as name:
        yield name


def settings(database: str) -> dict[str, object]:
    return {
        "store": {"url": url(database)},
        f"models.{MODEL}": {"backend": "scripted", "inline": True},
    }


def script(*events: dict[str, object]) -> str:
    return json.dumps({"script": list(events)})


def test_a_conversation_is_stored_and_continued(tmp_path: Path, database: str) -> None:
    server = LiveServer(tmp_path, settings(database)).start()
    try:
        with server.http() as http:
            first = http.post("/v1beta/interactions", json={"model": MODEL, "input": script({"text": "one"})}).json()
            second = http.post(
                "/v1beta/interactions",
                json={"model": MODEL, "input": script({"text": "two"}), "previous_interaction_id": first["id"]},
            ).json()
            got = http.get(f"/v1beta/interactions/{second['id']}").json()
            replay = http.get(f"/v1beta/interactions/{first['id']}?stream=true").text
    finally:
        server.stop()
    assert got["status"] == "completed" and got["previous_interaction_id"] == first["id"]
    assert got["steps"] == [{"type": "model_output", "content": [{"type": "text", "text": "two"}]}]
    assert replay.endswith("data: [DONE]\n\n") and '"text":"one"' in replay


def test_a_second_server_on_the_same_database_leaves_the_first_ones_runs_alone(tmp_path: Path, database: str) -> None:
    """A second server joins as a replica: it takes over nothing the first one runs (its lease and its
    membership hold), and the run goes on where it started."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = LiveServer(tmp_path / "a", settings(database)).start()
    second = LiveServer(tmp_path / "b", settings(database))
    try:
        with first.http() as http:
            body = {"model": MODEL, "input": script({"text": "a"}, {"hang": True}), "background": True}
            running = http.post("/v1beta/interactions", json=body).json()
            with psycopg.connect(f"host={SOCKETS} user=postgres dbname={database}") as db:
                owner = db.execute("SELECT lease_owner FROM interactions").fetchone()
            second.start()
            with second.http() as other:  # it has looked for runs to take over by the time it answers, and after
                assert other.get(f"/v1beta/interactions/{running['id']}").json()["status"] == "in_progress"
            assert http.get(f"/v1beta/interactions/{running['id']}").json()["status"] == "in_progress"
            with psycopg.connect(f"host={SOCKETS} user=postgres dbname={database}") as db:
                assert db.execute("SELECT lease_owner FROM interactions").fetchone() == owner
            assert http.post(f"/v1beta/interactions/{running['id']}/cancel").json()["status"] == "cancelled"
    finally:
        first.stop()
        second.stop()
    assert "continuing it" not in "".join(second.log)
    with psycopg.connect(f"host={SOCKETS} user=postgres dbname={database}") as db:
        assert db.execute("SELECT status FROM interactions").fetchall() == [("cancelled",)]


def test_a_result_is_stored_after_the_database_cut_every_connection(tmp_path: Path, database: str) -> None:
    """A restart, a failover or an idle reaper closes the server's pooled connections under it: the result of
    a run that ends afterwards must still be stored, not left in_progress."""
    server = LiveServer(tmp_path, settings(database)).start()
    try:
        with server.http() as http:
            for _ in range(3):  # connections in the pool: the writer's, and a reader's
                done = http.post("/v1beta/interactions", json={"model": MODEL, "input": "hi"}).json()
                assert http.get(f"/v1beta/interactions/{done['id']}?stream=true").status_code == 200
            body = {"model": MODEL, "input": script({"text": "a"}, {"hang": True}), "background": True}
            running = http.post("/v1beta/interactions", json=body).json()
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
                ).fetchall()
            assert cut
            assert http.post(f"/v1beta/interactions/{running['id']}/cancel").json()["status"] == "cancelled"
            got = http.get(f"/v1beta/interactions/{running['id']}")
            events = http.get(f"/v1beta/interactions/{running['id']}?stream=true").text
    finally:
        server.stop()
    assert got.status_code == 200 and got.json()["status"] == "cancelled"
    assert got.json()["steps"] == [{"type": "model_output", "content": [{"type": "text", "text": "a"}]}]
    assert '"status":"cancelled"' in events and events.endswith("data: [DONE]\n\n")
