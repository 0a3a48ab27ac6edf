"""Several servers on one PostgreSQL database: any of them serves any interaction. A run created on A streams
live on B, is read and cancelled on C; when A is killed (SIGKILL) its runs go on on B or C, and clients that
resume there get the exact stream; when the database restarts, the runs wait for it and finish."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pg
from live import LiveServer
from pgcluster import private_cluster
from resuming import Follower, check_ids, model_text, wait_for


def _texts(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"].get("text", "") for e in events if e["event_type"] == "step.delta")


def _text(steps: list[dict[str, Any]]) -> str:
    return "".join(model_text(steps))


def _paced(words: int, pause_ms: int = 20) -> str:
    script = [e for i in range(words) for e in ({"text": f"w{i} "}, {"sleep_ms": pause_ms})]
    return json.dumps({"script": [{"thought": "plan"}, *script]})


def _paced_runs(
    a: LiveServer, b: LiveServer, words: int
) -> tuple[list[str], dict[str, Any], list[Follower], list[Follower]]:
    """Three background runs created on A, and an uninterrupted reference run: their ids, the reference, and
    each run followed on A and on B."""
    with a.http() as http:
        ids = [http.post("/v1beta/interactions", json={"model": "m", "input": _paced(words), "background": True})
               .json()["id"] for _ in range(3)]  # fmt: skip
        reference = http.post("/v1beta/interactions", json={"model": "m", "input": _paced(words, 0)}).json()
    return ids, reference, [Follower(a, i) for i in ids], [Follower(b, i) for i in ids]


@contextmanager
def replicas(tmp_path: Path, url: str, count: int = 3) -> Iterator[list[LiveServer]]:
    servers = []
    for name in "abc"[:count]:
        (tmp_path / name).mkdir()
        sections = {
            "models.m": {"backend": "scripted", "inline": True},
            "store": {"url": url, "replica_grace_seconds": 0.5},
            "limits": {"run_claim_seconds": 0.2},
        }
        servers.append(LiveServer(tmp_path / name, sections))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_created_on_a_streamed_on_b_read_and_cancelled_on_c(tmp_path: Path) -> None:
    with pg.scratch_database() as database, replicas(tmp_path, pg.url(database)) as (a, b, c):
        script = json.dumps({"script": [{"thought": "plan"}, {"text": "first "}, {"sleep_ms": 30},
                                        {"text": "second "}, {"hang": True}]})  # fmt: skip
        with a.http() as http:
            interaction_id = http.post("/v1beta/interactions", json={"model": "m", "input": script,
                                                                     "background": True}).json()["id"]  # fmt: skip
        on_a, on_b = Follower(a, interaction_id), Follower(b, interaction_id)
        wait_for(lambda: _texts(on_b.events) == "first second ", seconds=30)
        with c.http() as http:
            running = http.get(f"/v1beta/interactions/{interaction_id}").json()
            assert running["status"] == "in_progress"
            assert _text(running["steps"]) == "first second "  # as far as its log is committed
            cancelled = http.post(f"/v1beta/interactions/{interaction_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            again = http.post(f"/v1beta/interactions/{interaction_id}/cancel")
            assert again.status_code == 400  # it has ended
        on_a.join(10)
        on_b.join(10)
        assert on_a.done and on_b.done
        assert on_b.events == on_a.events  # the same stream, event for event
        check_ids(on_b.events)
        assert on_b.events[-1]["interaction"]["status"] == "cancelled"
        resources = []
        for server in (a, b, c):
            with server.http() as http:
                resources.append(http.get(f"/v1beta/interactions/{interaction_id}").json())
        assert resources[0] == resources[1] == resources[2]
        assert resources[0]["status"] == "cancelled"

        # The thought's signature, made on A, verifies on B (one signing key for every replica), and a
        # chain started on A continues on C.
        with b.http() as http:
            turn = {
                "type": "user_input",
                "content": [{"type": "text", "text": json.dumps({"script": [{"text": "n"}]})}],
            }
            history = [turn, *resources[0]["steps"], turn]
            stateless = http.post("/v1beta/interactions", json={"model": "m", "input": history, "store": False})
            assert stateless.status_code == 200, stateless.text
        with c.http() as http:
            body = {"model": "m", "input": json.dumps({"script": [{"text": "more"}]}),
                    "previous_interaction_id": interaction_id}  # fmt: skip
            assert http.post("/v1beta/interactions", json=body).json()["status"] == "completed"


def test_a_killed_replicas_runs_go_on_elsewhere_and_resuming_clients_get_the_exact_stream(tmp_path: Path) -> None:
    with pg.scratch_database() as database, replicas(tmp_path, pg.url(database)) as (a, b, c):
        ids, reference, on_a, on_b = _paced_runs(a, b, words=60)
        wait_for(lambda: all(len(r.events) >= 20 for r in on_a), seconds=30)
        a.kill()
        for reader in on_a:
            reader.join(5)
        resumed = [Follower(c, r.id, r.last_id()) for r in on_a]  # the clients of A resume on C
        for reader in [*resumed, *on_b]:
            reader.join(60)
        with b.http() as http:
            stored = [http.get(f"/v1beta/interactions/{i}").json() for i in ids]
    for before, after, watcher, got in zip(on_a, resumed, on_b, stored, strict=True):
        assert got["status"] == "completed", got
        assert after.done and watcher.done
        joined = before.events + after.events
        check_ids(joined)
        assert joined == watcher.events  # B followed the run across A's death without a seam
        assert _texts(joined) == _text(got["steps"]) == _text(reference["steps"])
        # Live, not polled: before the kill, B had each event within moments of A (notifications).
        lags = sorted(b_at - a_at for a_at, b_at in zip(before.arrived, watcher.arrived, strict=False))
        assert lags[len(lags) // 2] < 0.5, lags
    assert any("continuing it" in line for server in (b, c) for line in server.log)


def test_runs_wait_for_a_restarting_database_and_finish(tmp_path: Path) -> None:
    with private_cluster() as cluster, replicas(tmp_path, cluster.url(), count=2) as (a, b):
        ids, reference, on_a, on_b = _paced_runs(a, b, words=50)
        wait_for(lambda: all(len(r.events) >= 15 for r in on_b), seconds=30)
        cluster.restart()
        for reader in [*on_a, *on_b]:
            reader.join(60)
        with b.http() as http:
            stored = [http.get(f"/v1beta/interactions/{i}").json() for i in ids]
        logs = "".join(a.log + b.log)
    assert "the replica connection to the database was cut" in logs
    assert "the database cannot be reached" in logs  # writes waited for it
    for local, remote, got in zip(on_a, on_b, stored, strict=True):
        assert got["status"] == "completed", got
        assert local.done and remote.done
        check_ids(local.events)
        assert remote.events == local.events
        assert _texts(local.events) == _text(got["steps"]) == _text(reference["steps"])


@pytest.mark.parametrize("count", [1])
def test_a_lone_server_on_postgresql_continues_its_runs_at_once_after_a_restart(tmp_path: Path, count: int) -> None:
    """The leases of the previous process name a server that is not alive: no waiting for them to run out."""
    with pg.scratch_database() as database, replicas(tmp_path, pg.url(database), count=count) as (a,):
        with a.http() as http:
            interaction_id = http.post("/v1beta/interactions", json={"model": "m", "input": _paced(40),
                                                                     "background": True}).json()["id"]  # fmt: skip
        reader = Follower(a, interaction_id)
        wait_for(lambda: len(reader.events) >= 10, seconds=30)
        a.kill()
        reader.join(5)
        started = time.monotonic()
        a.start()
        resumed = Follower(a, interaction_id, reader.last_id())
        resumed.join(30)
        assert resumed.done
        assert time.monotonic() - started < 10  # the lease (30 s) did not have to run out
        check_ids(reader.events + resumed.events)


def test_a_run_deleted_on_another_replica_stops_where_it_runs(tmp_path: Path) -> None:
    with pg.scratch_database() as database, replicas(tmp_path, pg.url(database), count=2) as (a, b):
        script = json.dumps({"script": [{"text": "working "}, {"hang": True}]})
        with a.http() as http:
            interaction_id = http.post("/v1beta/interactions", json={"model": "m", "input": script,
                                                                     "background": True}).json()["id"]  # fmt: skip
        on_a = Follower(a, interaction_id)
        wait_for(lambda: _texts(on_a.events) == "working ", seconds=30)
        with b.http() as http:
            assert http.delete(f"/v1beta/interactions/{interaction_id}").status_code == 200
            assert http.get(f"/v1beta/interactions/{interaction_id}").status_code == 404
        on_a.join(10)
        assert on_a.events[-1]["event_type"] == "interaction.completed"  # A stopped it (cancelled), then it went
        assert on_a.events[-1]["interaction"]["status"] == "cancelled"
        with a.http() as http:
            assert http.get(f"/v1beta/interactions/{interaction_id}").status_code == 404


def _start_all(servers: list[LiveServer]) -> list[BaseException]:
    """Start the servers at once; what their starts raised."""
    failures: list[BaseException] = []

    def start(server: LiveServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return failures


def test_replicas_starting_together_on_an_empty_database_all_start(tmp_path: Path) -> None:
    """They take turns making the tables (an advisory lock): without it, of two servers started by a script at
    the same moment, one failed on a duplicate type about every other try (bench/replicas.py). Starts here are
    less tightly together, so this catches the race only some of the time."""
    for attempt in range(3):
        with pg.scratch_database() as database:
            servers = []
            for name in "abc":
                (tmp_path / f"{name}{attempt}").mkdir()
                sections = {"models.m": {"backend": "scripted", "inline": True}, "store": {"url": pg.url(database)}}
                servers.append(LiveServer(tmp_path / f"{name}{attempt}", sections))
            try:
                assert not (failures := _start_all(servers)), failures
            finally:
                for server in servers:
                    server.stop()
