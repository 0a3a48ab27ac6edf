"""What replica B's live listener sees when the fan-out's server restarts mid-run (issue 15, item 3).

    .venv/bin/python bench/fanout_restart.py [--streams 10] [--rate 50] [--seconds 8] [--at 3]

Starts its own PostgreSQL cluster (initdb; as the postgres user when run as root) and its own Redis (no
persistence, as the shared one is configured: ``save ""``, ``appendonly no``) on free loopback ports in a
temporary folder: the shared servers are never restarted. The writer and the listener are those of
bench/fanout.py, made to survive a lost connection; ``--streams`` interactions emit ``--rate`` events/s each.

- ``notify``: PostgreSQL is stopped (``pg_ctl stop -m fast``) ``--at`` s in and started again ``--down`` s later.
  The writer reconnects and commits its pending batch again (``ON CONFLICT DO NOTHING``: a commit whose answer
  was lost is not repeated). The listener reconnects, LISTENs, then reads every interaction from its last seq
  (the catch-up): the notifications sent while it was away are lost, the rows are not.
- ``redis``: Redis is stopped (SIGTERM) ``--at`` s in and started again ``--down`` s later; PostgreSQL stays
  up. The writer's XADDs fail while it is down (the events are committed in PostgreSQL all the same; redis-py
  as configured by default, which retries a failed command with backoff). The listener retries XREAD from its
  last ids; a seq gap in a stream is filled from PostgreSQL; once the writer is done, whatever is still missing
  is read from PostgreSQL (events no later XADD would reveal: lost for a Redis-only listener).

Per scenario: events committed, and how the listener got them (the mechanism, PostgreSQL catch-up after a
reconnect or gap, the final PostgreSQL read), those never received, the outage as the writer and the listener
saw it, and the latency (commit → in hand) of events committed around the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing as mp
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import CHANNEL, DDL, MAXLEN, NOTIFY, SELECT, Plan, percentile, sample_frames, schedule
from servers import free_port

INSERT = "INSERT INTO events (interaction_id, seq, frame) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


# --- private servers ------------------------------------------------------------------------------------------


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        os.chown(folder, *self._ids())
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _ids(self) -> tuple[int, int]:
        if os.getuid() != 0:
            return os.getuid(), os.getgid()
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid

    def _run(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, str(PG_BIN / tool), *args], check=True, capture_output=True)

    def pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-m", "fast", "-w", action)


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(["redis-server", *args, "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return
            time.sleep(0.025)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)


@contextlib.contextmanager
def servers() -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    folder = Path(tempfile.mkdtemp(prefix="oi-fanout-"))
    pg, rd = PrivatePostgres(folder), PrivateRedis(folder)
    try:
        pg.pg_ctl("start")
        rd.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(DDL)
        yield pg, rd
    finally:
        rd.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.pg_ctl("stop")
        shutil.rmtree(folder, ignore_errors=True)


# --- the writer, surviving a restart ---------------------------------------------------------------------------


def writer(plan: Plan, ids: list[str], go: Any, out: Any) -> None:
    frames, seqs = sample_frames(), [0] * plan.streams
    conn: psycopg.Connection[Any] | None = None
    pipe = redis.Redis.from_url(plan.redis_url).pipeline(transaction=False)
    commits: list[list[float]] = [[] for _ in ids]
    pending: list[tuple[int, tuple[str, int, bytes]]] = []
    failures: list[float] = []  # when a commit or a publish failed
    unpublished = 0
    due = schedule(plan, go.get())
    for at, s in due:
        time.sleep(max(0.0, at - time.monotonic()))
        seqs[s] += 1
        pending.append((s, (ids[s], seqs[s], frames[(s + seqs[s]) % len(frames)])))
        try:
            conn = conn or psycopg.connect(plan.dsn, connect_timeout=2)
            rows = [row for _, row in pending]
            conn.cursor().executemany(INSERT, rows)
            if plan.mechanism == "notify":
                conn.execute(NOTIFY, ([f"{iid} {seq}" for iid, seq, _ in rows],))
            conn.commit()
        except psycopg.OperationalError:
            failures.append(time.monotonic())
            if conn is not None:
                conn.close()
            conn = None
            continue
        committed = time.monotonic()
        for s2, _row in pending:
            commits[s2].append(committed)
        if plan.mechanism == "redis":
            try:
                for iid, seq, frame in rows:
                    pipe.xadd(plan.prefix + iid, {"seq": seq, "frame": frame}, maxlen=MAXLEN, approximate=True)
                pipe.execute()
            except redis.ConnectionError:
                pipe.reset()
                failures.append(time.monotonic())
                unpublished += len(rows)
        pending = []
    out.put({"role": "writer", "commits": commits, "failures": failures, "unpublished": unpublished})


# --- the listeners, surviving a restart ------------------------------------------------------------------------


class Log:
    """What the listener got, by stream and seq: when, and by which path."""

    def __init__(self, streams: int, expected: Any, done: Any) -> None:
        self.times: list[dict[int, float]] = [{} for _ in range(streams)]
        self.paths: dict[str, int] = {}
        self.expected, self.done = expected, done
        self.outages: list[tuple[float, float]] = []  # connection lost, listening again

    def have(self, s: int) -> int:  # the last seq received in order
        return len(self.times[s])

    def add(self, s: int, seq: int, path: str) -> None:
        if seq == self.have(s) + 1:
            self.times[s][seq] = time.monotonic()
            self.paths[path] = self.paths.get(path, 0) + 1

    def complete(self) -> bool:
        return bool(self.done.is_set()) and sum(map(len, self.times)) >= int(self.expected.value)


async def read_rows(conn: psycopg.AsyncConnection[Any], iid: str, after: int, before: int | None = None) -> list[Any]:
    cursor = await conn.execute(SELECT, (iid, after))
    return [row for row in await cursor.fetchall() if before is None or row[0] < before]


async def listen_notify(plan: Plan, ids: list[str], log: Log) -> None:
    index, lost = {iid: s for s, iid in enumerate(ids)}, None
    while not log.complete():
        try:
            async with (
                await psycopg.AsyncConnection.connect(plan.dsn, autocommit=True, connect_timeout=2) as listening,
                await psycopg.AsyncConnection.connect(plan.dsn, autocommit=True, connect_timeout=2) as reading,
            ):
                await listening.execute(f"LISTEN {CHANNEL}")
                if lost is not None:  # back: what was committed meanwhile is in the table, its notifications gone
                    log.outages.append((lost, time.monotonic()))
                    lost = None
                    for s, iid in enumerate(ids):
                        for seq, _frame in await read_rows(reading, iid, log.have(s)):
                            log.add(s, seq, "PostgreSQL catch-up after reconnect")
                while not log.complete():
                    async for note in listening.notifies(timeout=0.1):
                        iid, _, _seq = note.payload.partition(" ")
                        s = index[iid]
                        for seq, _frame in await read_rows(reading, iid, log.have(s)):
                            log.add(s, seq, "NOTIFY")
        except psycopg.OperationalError:
            lost = lost or time.monotonic()
            await asyncio.sleep(0.05)


async def listen_redis(plan: Plan, ids: list[str], log: Log) -> None:
    client = aioredis.Redis.from_url(plan.redis_url)
    keys = {(plan.prefix + iid).encode(): s for s, iid in enumerate(ids)}
    last: dict[Any, Any] = dict.fromkeys(keys, b"0-0")
    lost: float | None = None
    async with await psycopg.AsyncConnection.connect(plan.dsn, autocommit=True) as pg:
        idle_since = None
        while not log.complete():
            try:
                answer: Any = await client.xread(last, block=100)
            except (redis.ConnectionError, aioredis.ConnectionError, OSError):
                lost = lost or time.monotonic()
                await asyncio.sleep(0.05)
                continue
            if lost is not None:
                log.outages.append((lost, time.monotonic()))
                lost = None
            for key, entries in answer or []:
                s = keys[key]
                for _entry_id, fields in entries:
                    seq = int(fields[b"seq"])
                    if seq > log.have(s) + 1:  # a gap: the entries between are not in Redis
                        for row_seq, _frame in await read_rows(pg, ids[s], log.have(s), seq):
                            log.add(s, row_seq, "PostgreSQL gap fill")
                    log.add(s, seq, "Redis")
                last[key] = entries[-1][0]
            idle_since = None if answer else (idle_since or time.monotonic())
            if log.done.is_set() and idle_since and time.monotonic() - idle_since > 0.5:
                for s, iid in enumerate(ids):  # tails no later entry revealed
                    for seq, _frame in await read_rows(pg, iid, log.have(s)):
                        log.add(s, seq, "final PostgreSQL read")
                break
    await client.aclose()


def listener(plan: Plan, ids: list[str], expected: Any, done: Any, out: Any) -> None:
    log = Log(plan.streams, expected, done)
    listen = listen_notify if plan.mechanism == "notify" else listen_redis

    async def bounded() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listen(plan, ids, log), plan.seconds + 30)

    asyncio.run(bounded())
    out.put({"role": "listener", "times": log.times, "paths": log.paths, "outages": log.outages})


# --- one scenario, and the report ------------------------------------------------------------------------------


def scenario(mechanism: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with servers() as (pg, rd):
        plan = Plan(mechanism, args.streams, args.rate, args.seconds, pg.dsn, rd.url, "oi:restart:")
        ids = ["v1_" + secrets.token_urlsafe(18) for _ in range(args.streams)]
        go, out, expected, done = ctx.Queue(), ctx.Queue(), ctx.Value("q", 0), ctx.Event()
        procs = [ctx.Process(target=writer, args=(plan, ids, go, out)),
                 ctx.Process(target=listener, args=(plan, ids, expected, done, out))]  # fmt: skip
        for proc in procs:
            proc.start()
        time.sleep(1.0)  # the listener connects (its catch-up covers whatever it misses)
        start = time.monotonic() + 0.2
        go.put(start)
        time.sleep(max(0.0, start + args.at - time.monotonic()))
        t0 = time.monotonic()
        if mechanism == "notify":
            pg.pg_ctl("stop")
            time.sleep(args.down)
            pg.pg_ctl("start")
        else:
            rd.stop()
            time.sleep(args.down)
            rd.start()
        restart = (t0, time.monotonic())
        results = {}
        for _ in procs:
            result = out.get(timeout=args.seconds + 60)
            results[result["role"]] = result
            if result["role"] == "writer":
                expected.value = sum(map(len, result["commits"]))
                done.set()
        for proc in procs:
            proc.join()
    return summarise(mechanism, restart, results)


def summarise(mechanism: str, restart: tuple[float, float], res: dict[str, Any]) -> dict[str, Any]:
    w, li = res["writer"], res["listener"]
    commits, times = w["commits"], li["times"]
    committed = sum(map(len, commits))
    received = sum(map(len, times))
    near = [(times[s][seq + 1] - c) * 1e3 for s, cs in enumerate(commits) for seq, c in enumerate(cs)
            if seq + 1 in times[s] and restart[0] - 1 <= c <= restart[1] + 2]  # fmt: skip
    fails = w["failures"]
    moments = sorted({c for cs in commits for c in cs})
    stall = max((b - a for a, b in itertools.pairwise(moments)), default=0.0)
    return {"mechanism": mechanism, "restart_s": restart[1] - restart[0], "committed": committed,
            "paths": li["paths"], "missing": committed - received, "unpublished": w["unpublished"],
            "writer_failing_s": (fails[-1] - fails[0]) if fails else 0.0,
            "listener_away_s": sum(b - a for a, b in li["outages"]), "stall_s": stall,
            "p50": percentile(near, 0.5), "max": max(near, default=float("nan"))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--at", type=float, default=3.0, help="seconds into the run when the server restarts")
    parser.add_argument("--down", type=float, default=0.0, help="seconds the server stays stopped")
    args = parser.parse_args()
    rows = [scenario(mechanism, args) for mechanism in ("notify", "redis")]
    print(
        "| mechanism, server restarted | restart took s | writer failing s | writer's longest pause s "
        "| listener away s | events committed "
        "| received by path | never received | XADDs lost | latency p50 / max ms, -1/+2 s of the restart |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        paths = ", ".join(f"{k}: {v}" for k, v in r["paths"].items())
        server = "notify, PostgreSQL" if r["mechanism"] == "notify" else "redis, Redis"
        print(
            f"| {server} | {r['restart_s']:.2f} | {r['writer_failing_s']:.2f} | {r['stall_s']:.2f} "
            f"| {r['listener_away_s']:.2f} "
            f"| {r['committed']} | {paths} | {r['missing']} | {r['unpublished']} | {r['p50']:.1f} / {r['max']:.0f} |"
        )


if __name__ == "__main__":
    main()
