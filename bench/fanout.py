"""Cross-replica event fan-out (issue 15, item 3): PostgreSQL LISTEN/NOTIFY against Redis Streams, side by side.

    .venv/bin/python bench/fanout.py [--seconds 5] [--rate 50] [--streams 1,10,100] [--asap 10]

(redis-py comes with the test extras, ``scripts/install --test``.) Loopback only: PostgreSQL at ``--pg`` (a
scratch database, dropped afterwards) and Redis at ``--redis``. Two processes, as two replicas would be:

- the writer (replica A's store writer): one psycopg connection; every batch of pending events is one
  transaction that INSERTs their ``events`` rows (one row per SSE frame of 200-400 bytes, the store's table) and
  commits. ``none``: nothing else (the cost reference). ``notify``: the same transaction also calls
  ``pg_notify('oi_events', '<interaction_id> <seq>')``, once per interaction in the batch. ``redis``: after the
  commit (PostgreSQL stays the durable truth), one pipeline XADDs each frame to its interaction's stream
  (``MAXLEN ~ 1000``).
- the listener (replica B): asyncio. ``notify``: a psycopg AsyncConnection that LISTENs, and on notifications a
  second connection reads the new rows of each notified interaction
  (``SELECT seq, frame FROM events WHERE interaction_id = %s AND seq > %s``, one pipeline per wake-up).
  ``redis``: redis.asyncio XREAD BLOCK on every stream.

Latency = the writer's commit returning → the frame in the listener's hands (for redis the XADD after the
commit is inside it), both from CLOCK_MONOTONIC, which processes share. Each of ``--streams`` interactions emits
``--rate`` events/s, phases spread; the ``--asap`` row has that many interactions whose every batch holds one
event of each, as fast as the writer commits. Events committed in the first 0.5 s are not counted.
CPU is per delivered event, in µs: the writer's process, its PostgreSQL backend, the listener's process, the
listener's backends, the Redis server (INFO cpu, the whole server).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import secrets
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis

CHANNEL = "oi_events"
DDL = (
    "CREATE TABLE events (interaction_id VARCHAR(64) NOT NULL, seq INTEGER NOT NULL, frame BYTEA NOT NULL, "
    "PRIMARY KEY (interaction_id, seq))"
)  # store/tables.py's events table, as SQLAlchemy creates it on PostgreSQL
INSERT = "INSERT INTO events (interaction_id, seq, frame) VALUES (%s, %s, %s)"
NOTIFY = f"SELECT pg_notify('{CHANNEL}', n) FROM unnest(%s::text[]) AS n"
SELECT = "SELECT seq, frame FROM events WHERE interaction_id = %s AND seq > %s ORDER BY seq"
SELECT_MANY = (
    "SELECT w.s, e.seq, e.frame FROM unnest(%s::int[], %s::text[], %s::int[]) AS w(s, id, after) "
    "JOIN events e ON e.interaction_id = w.id AND e.seq > w.after ORDER BY w.s, e.seq"
)
WARMUP = 0.5
MAXLEN = 1000
MECHANISMS = ("none", "notify", "redis")  # what the writer does
LIVE = ("none", "notify", "notify1q", "redis")  # notify1q: notify, read by one query per wake-up


@dataclass
class Plan:
    mechanism: str  # none | notify | redis
    streams: int
    rate: float  # events/s per stream; 0: as fast as possible
    seconds: float
    dsn: str
    redis_url: str
    prefix: str  # of this run's Redis stream keys


def sample_frames(count: int = 64) -> list[bytes]:
    """SSE frames as the server writes them, 200-400 bytes."""
    rng = random.Random(1)
    words = [
        "the",
        "of",
        "a",
        "model",
        "stream",
        "event",
        "delta",
        "token",
        "replica",
        "listen",
        "notify",
        "commit",
        "batch",
        "durable",
    ]
    frames = []
    for i in range(count):
        head = f'event: content.delta\ndata: {{"event_type":"content.delta","event_id":"evt_{i:08d}","index":0,'
        text = ""
        target = rng.randint(200, 400) - len(head) - 40
        while len(text) < target:
            text += rng.choice(words) + " "
        frames.append(f'{head}"delta":{{"type":"text","text":"{text}"}}}}\n\n'.encode())
    return frames


def backend_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes (PostgreSQL backends on this machine), from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- the writer (replica A) -------------------------------------------------------------------------------------


def schedule(plan: Plan, start: float) -> list[tuple[float, int]]:
    per = int(plan.rate * plan.seconds)
    due = [(start + (s / plan.streams + k) / plan.rate, s) for s in range(plan.streams) for k in range(per)]
    return sorted(due)


class Batcher:
    """Replica A's store writer: commits a batch of event rows, and publishes them by one mechanism."""

    def __init__(self, dsn: str, redis_url: str, prefix: str) -> None:
        self.conn = psycopg.connect(dsn)
        self.cur = self.conn.cursor()
        self.pipe = redis.Redis.from_url(redis_url).pipeline(transaction=False)
        self.prefix = prefix

    def commit(self, mechanism: str, rows: list[tuple[str, int, bytes]]) -> tuple[float, float, float]:
        """Monotonic times: the transaction's start, the commit's return, the publish's end."""
        t0 = time.monotonic()
        self.cur.executemany(INSERT, rows)
        if mechanism.startswith("notify"):
            last = {iid: seq for iid, seq, _ in rows}  # one notification per interaction: its last seq
            self.cur.execute(NOTIFY, ([f"{iid} {seq}" for iid, seq in last.items()],))
        self.conn.commit()
        t1 = time.monotonic()
        if mechanism == "redis":
            for iid, seq, frame in rows:
                self.pipe.xadd(self.prefix + iid, {"seq": seq, "frame": frame}, maxlen=MAXLEN, approximate=True)
            self.pipe.execute()
        return t0, t1, time.monotonic()


def writer(plan: Plan, ids: list[str], go: Any, out: Any) -> None:
    frames = sample_frames()
    batcher = Batcher(plan.dsn, plan.redis_url, plan.prefix)
    pid = batcher.conn.info.backend_pid
    seqs = [0] * plan.streams
    commits: list[list[float]] = [[] for _ in ids]
    starts: list[list[float]] = [[] for _ in ids]
    tx: list[float] = []
    publish: list[float] = []
    start = go.get()
    due = schedule(plan, start) if plan.rate else []
    end, i = start + plan.seconds, 0
    time.sleep(max(0.0, start - time.monotonic()))
    cpu0, db0 = time.process_time(), backend_cpu([pid])
    while True:
        now = time.monotonic()
        if plan.rate:
            if i == len(due):
                break
            if due[i][0] > now:
                time.sleep(due[i][0] - now)
                continue
            j = i
            while j < len(due) and due[j][0] <= now:
                j += 1
            batch = [s for _, s in due[i:j]]  # what is pending: group commit
            i = j
        elif now >= end:
            break
        else:
            batch = list(range(plan.streams))
        rows = []
        for s in batch:
            seqs[s] += 1
            rows.append((ids[s], seqs[s], frames[(s + seqs[s]) % len(frames)]))
        t0, t1, t2 = batcher.commit(plan.mechanism, rows)
        for s in batch:
            starts[s].append(t0)
            commits[s].append(t1)
        tx.append(t1 - t0)
        publish.append(t2 - t1)
    out.put({"role": "writer", "commits": commits, "starts": starts, "tx": tx, "publish": publish,
             "cpu": time.process_time() - cpu0, "db": backend_cpu([pid]) - db0})  # fmt: skip
    batcher.conn.close()


def writer_cost(dsn: str, redis_url: str, prefix: str, shapes: list[int], reps: int) -> dict[tuple[int, str], Any]:
    """The writer's cost of each mechanism at fixed batch shapes (``n`` events of ``n`` interactions), the three
    variants interleaved batch by batch; a listener drains the channel meanwhile, as replica B would."""
    frames, batcher = sample_frames(), Batcher(dsn, redis_url, prefix)
    pid = batcher.conn.info.backend_pid
    stop = threading.Event()

    def drain() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            while not stop.is_set():
                for _ in conn.notifies(timeout=0.1):
                    pass

    drainer = threading.Thread(target=drain)
    drainer.start()
    samples: dict[tuple[int, str], list[list[float]]] = {}
    seq = 0
    try:
        for n in shapes:
            ids = ["v1_" + secrets.token_urlsafe(18) for _ in range(n)]
            for rep in range(reps):
                seq += 1
                for k in range(3):
                    mechanism = MECHANISMS[(rep + k) % 3]
                    rows = [
                        (f"{iid}{(rep + k) % 3}", seq, frames[(i + seq) % len(frames)]) for i, iid in enumerate(ids)
                    ]
                    cpu, db = time.process_time(), backend_cpu([pid])
                    t0, t1, t2 = batcher.commit(mechanism, rows)
                    cpu, db = time.process_time() - cpu, backend_cpu([pid]) - db
                    samples.setdefault((n, mechanism), []).append([t1 - t0, t2 - t0, cpu, db])
    finally:
        stop.set()
        drainer.join()
        batcher.conn.close()
    return samples


# --- the listener (replica B) -----------------------------------------------------------------------------------


class Received:
    """Arrival times by stream and seq, and when to stop: the writer done and everything it committed here."""

    def __init__(self, streams: int, expected: Any, done: Any) -> None:
        self.times: list[list[float]] = [[] for _ in range(streams)]
        self.count = 0
        self.expected, self.done = expected, done
        self.deadline = float("inf")

    def add(self, s: int, seq: int, at: float) -> None:
        if seq == len(self.times[s]) + 1:  # in order, once
            self.times[s].append(at)
            self.count += 1

    def finished(self) -> bool:
        if not self.done.is_set():
            return False
        if self.deadline == float("inf"):
            self.deadline = time.monotonic() + 10.0
        return self.count >= self.expected.value or time.monotonic() > self.deadline


class Meter:
    """The listener's CPU from the moment it listens: its process's and its PostgreSQL backends'."""

    def __init__(self, ready: Any) -> None:
        self.ready, self.pids = ready, list[int]()
        self.cpu = self.db = 0.0

    def start(self, pids: list[int]) -> None:
        self.pids, self.cpu, self.db = pids, time.process_time(), backend_cpu(pids)
        self.ready.put(pids)

    def stop(self) -> None:  # before the connections close: their backends' /proc entries go with them
        self.cpu, self.db = time.process_time() - self.cpu, backend_cpu(self.pids) - self.db


async def listen_notify(plan: Plan, ids: list[str], got: Received, meter: Meter) -> None:
    index = {iid: s for s, iid in enumerate(ids)}
    listening = await psycopg.AsyncConnection.connect(plan.dsn, autocommit=True)
    reading = await psycopg.AsyncConnection.connect(plan.dsn, autocommit=True)
    await listening.execute(f"LISTEN {CHANNEL}")
    dirty: set[int] = set()
    wake = asyncio.Event()

    async def notified() -> None:
        while not got.finished():
            async for note in listening.notifies(timeout=0.1):
                iid, _, seq = note.payload.partition(" ")
                s = index.get(iid)
                if s is not None and int(seq) > len(got.times[s]):
                    dirty.add(s)
                    wake.set()
        wake.set()

    async def read() -> None:
        while not got.finished():
            await wake.wait()
            wake.clear()
            todo = list(dirty)
            dirty.clear()
            if plan.mechanism == "notify1q":
                args = (todo, [ids[s] for s in todo], [len(got.times[s]) for s in todo])
                cursor = await reading.execute(SELECT_MANY, args)
                rows = await cursor.fetchall()
                at = time.monotonic()
                for s, seq, _frame in rows:
                    got.add(s, seq, at)
                continue
            async with reading.pipeline():  # one round trip per wake-up, whatever the interactions notified
                cursors = []
                for s in todo:
                    cursor = reading.cursor()
                    await cursor.execute(SELECT, (ids[s], len(got.times[s])))
                    cursors.append(cursor)
                for s, cursor in zip(todo, cursors, strict=True):
                    rows = await cursor.fetchall()
                    at = time.monotonic()
                    for seq, _frame in rows:
                        got.add(s, seq, at)

    meter.start([listening.info.backend_pid, reading.info.backend_pid])
    await asyncio.gather(notified(), read())
    meter.stop()
    await listening.close()
    await reading.close()


async def listen_redis(plan: Plan, ids: list[str], got: Received, meter: Meter) -> None:
    client = aioredis.Redis.from_url(plan.redis_url)
    keys = {f"{plan.prefix}{iid}".encode(): s for s, iid in enumerate(ids)}
    last: dict[Any, Any] = dict.fromkeys(keys, b"0-0")
    await client.ping()
    meter.start([])
    while not got.finished():
        answer: Any = await client.xread(last, block=100)
        at = time.monotonic()
        for key, entries in answer or []:
            s = keys[key]
            for _entry_id, fields in entries:
                got.add(s, int(fields[b"seq"]), at)  # fields[b"frame"]: the frame in hand
            last[key] = entries[-1][0]
    meter.stop()
    await client.aclose()


def listener(plan: Plan, ids: list[str], ready: Any, expected: Any, done: Any, out: Any) -> None:
    got, meter = Received(plan.streams, expected, done), Meter(ready)
    listen = listen_notify if plan.mechanism.startswith("notify") else listen_redis
    asyncio.run(listen(plan, ids, got, meter))
    out.put({"role": "listener", "times": got.times, "cpu": meter.cpu, "db": meter.db})


# --- one run, and the report -----------------------------------------------------------------------------------


def run_one(plan: Plan, admin: redis.Redis) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ids = ["v1_" + secrets.token_urlsafe(18) for _ in range(plan.streams)]
    go, ready, out = ctx.Queue(), ctx.Queue(), ctx.Queue()
    expected, done = ctx.Value("q", 0), ctx.Event()
    with psycopg.connect(plan.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events")
        conn.execute("CHECKPOINT")
    procs = [ctx.Process(target=writer, args=(plan, ids, go, out))]
    if plan.mechanism != "none":
        procs.append(ctx.Process(target=listener, args=(plan, ids, ready, expected, done, out)))
    for proc in procs:
        proc.start()
    if plan.mechanism != "none":
        ready.get(timeout=30)
    server0 = redis_cpu(admin)
    go.put(time.monotonic() + 0.3)
    results = {}
    for _ in procs:
        result = out.get(timeout=plan.seconds + 60)
        results[result["role"]] = result
        if result["role"] == "writer":
            expected.value = sum(len(c) for c in result["commits"])
            done.set()
    results["redis"] = redis_cpu(admin) - server0
    for proc in procs:
        proc.join()
    if plan.mechanism == "redis":
        admin.delete(*[f"{plan.prefix}{i}" for i in ids])
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarise(plan: Plan, res: dict[str, Any]) -> dict[str, Any]:
    w = res["writer"]
    commits, starts = w["commits"], w["starts"]
    committed = sum(len(c) for c in commits)
    first = min(c[0] for c in commits if c)
    last = max(c[-1] for c in commits if c)
    row: dict[str, Any] = {"committed": committed, "batches": len(w["tx"]), "written": committed / (last - first),
                           "tx50": percentile(w["tx"], 0.5) * 1e3, "tx99": percentile(w["tx"], 0.99) * 1e3,
                           "pub50": percentile(w["publish"], 0.5) * 1e3, "pub99": percentile(w["publish"], 0.99) * 1e3,
                           "wcpu": w["cpu"] / committed * 1e6, "wdb": w["db"] / committed * 1e6}  # fmt: skip
    if "listener" not in res:
        return row
    times = res["listener"]["times"]
    lat, end_to_end, arrivals = [], [], []
    for c, b, t in zip(commits, starts, times, strict=True):
        for commit, begun, arrival in zip(c, b, t, strict=False):
            if commit - first >= WARMUP:
                lat.append((arrival - commit) * 1e3)
                end_to_end.append((arrival - begun) * 1e3)
                arrivals.append(arrival)
    delivered = sum(len(t) for t in times)
    row.update(delivered=delivered, lost=committed - delivered, eps=len(arrivals) / (max(arrivals) - min(arrivals)),
               p50=percentile(lat, 0.5), p99=percentile(lat, 0.99), max=max(lat), min=min(lat),
               e50=percentile(end_to_end, 0.5), e99=percentile(end_to_end, 0.99),
               lcpu=res["listener"]["cpu"] / delivered * 1e6, ldb=res["listener"]["db"] / delivered * 1e6,
               rcpu=res["redis"] / delivered * 1e6 if plan.mechanism == "redis" else 0.0)  # fmt: skip
    return row


def medians(runs: dict[tuple[str, int, float], list[dict[str, Any]]]) -> dict[tuple[str, int, float], dict[str, Any]]:
    return {key: {field: statistics.median(r[field] for r in rows) for field in rows[0]} for key, rows in runs.items()}


def report(runs: dict[tuple[str, int, float], list[dict[str, Any]]]) -> None:
    table = medians(runs)
    rounds = len(next(iter(runs.values())))
    print(f"\nDelivery, median of {rounds} round(s). Latency ms from the writer's commit returning (and from the")
    print("batch's transaction starting, e2e) to the frame in the listener's hands; CPU µs per delivered event.")
    print("| mechanism | streams | events/s each | delivered ev/s | p50 | p99 | max | min | e2e p50 | e2e p99 "
          "| lost | listener CPU | its PG backends | Redis server |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (mech, streams, rate), r in table.items():
        if "p50" in r:
            print(f"| {mech} | {streams} | {rate or 'asap'} | {r['eps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                  f"| {r['max']:.1f} | {r['min']:.2f} | {r['e50']:.2f} | {r['e99']:.2f} | {r['lost']:.0f} "
                  f"| {r['lcpu']:.0f} | {r['ldb']:.0f} | {r['rcpu']:.0f} |")  # fmt: skip
    print("\nRedis / NOTIFY at the same load (medians)")
    print("| ratio | streams | events/s each | delivered ev/s | p50 | p99 | e2e p50 | e2e p99 | listener-side CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (mech, streams, rate), r in table.items():
        for other in ("notify", "notify1q"):
            o = table.get((other, streams, rate))
            if mech != "redis" or not o:
                continue
            side, other_side = r["lcpu"] + r["rcpu"], o["lcpu"] + o["ldb"]
            print(f"| redis / {other} | {streams} | {rate or 'asap'} | {r['eps'] / o['eps']:.2f} "
                  f"| {r['p50'] / o['p50']:.2f} | {r['p99'] / o['p99']:.2f} | {r['e50'] / o['e50']:.2f} "
                  f"| {r['e99'] / o['e99']:.2f} "
                  f"| {side / other_side:.2f} |")  # fmt: skip
    print("\nWriter's cost, medians (tx = the INSERTs [+ pg_notify] + COMMIT; publish = the XADD pipeline after it)")
    print("| mechanism | streams | events/s each | written ev/s | events/batch | tx p50 ms | tx p99 ms "
          "| publish p50 ms | publish p99 ms | writer CPU µs/ev | its PG backend µs/ev |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (mech, streams, rate), r in table.items():
        print(f"| {mech} | {streams} | {rate or 'asap'} | {r['written']:.0f} | {r['committed'] / r['batches']:.1f} "
              f"| {r['tx50']:.2f} | {r['tx99']:.2f} | {r['pub50']:.2f} | {r['pub99']:.2f} | {r['wcpu']:.0f} "
              f"| {r['wdb']:.0f} |")  # fmt: skip


def report_cost(samples: dict[tuple[int, str], list[list[float]]]) -> None:
    print("\nWriter's cost per batch at fixed shapes (n events of n interactions; variants interleaved). tx: the")
    print("INSERTs [+ pg_notify] + COMMIT; total: tx + the XADD pipeline after it; CPU: mean µs per batch.")
    print("| events/batch | mechanism | tx p50 ms | total p50 ms | total mean ms | total p99 ms | writer CPU "
          "| its PG backend CPU | total p50 - none's | CPU - none's (writer + backend) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (n, mechanism), rows in samples.items():
        tx, total, cpu, db = (list(column) for column in zip(*rows, strict=True))
        base = list(zip(*samples[(n, "none")], strict=True))
        extra = (percentile(total, 0.5) - percentile(list(base[1]), 0.5)) * 1e6
        extra_cpu = statistics.mean(cpu) + statistics.mean(db) - statistics.mean(base[2]) - statistics.mean(base[3])
        print(f"| {n} | {mechanism} | {percentile(tx, 0.5) * 1e3:.2f} | {percentile(total, 0.5) * 1e3:.2f} "
              f"| {statistics.mean(total) * 1e3:.2f} | {percentile(total, 0.99) * 1e3:.2f} "
              f"| {statistics.mean(cpu) * 1e6:.0f} | {statistics.mean(db) * 1e6:.0f} | {extra:+.0f} µs "
              f"| {extra_cpu * 1e6:+.0f} µs |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=50.0, help="events/s of each stream")
    parser.add_argument("--streams", default="1,10,100")
    parser.add_argument("--asap", type=int, default=10, help="streams of the as-fast-as-possible row (0: none)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cost-shapes", default="1,10,100", help="batch sizes of the writer's cost (empty: none)")
    parser.add_argument("--cost-reps", type=int, default=300)
    parser.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    loads = [(int(n), args.rate) for n in args.streams.split(",") if n] + ([(args.asap, 0.0)] if args.asap else [])
    database = f"oi_fanout_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = psycopg.conninfo.make_conninfo(args.pg, dbname=database)
    admin_redis = redis.Redis.from_url(args.redis)
    prefix = f"oi:fanout:{database}:"
    runs: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
        shapes = [int(n) for n in args.cost_shapes.split(",") if n]
        cost = writer_cost(dsn, args.redis, prefix, shapes, args.cost_reps) if shapes else {}
        for _ in range(args.rounds):  # round after round, so that the host's drift hits every mechanism alike
            for streams, rate in loads:
                for mechanism in LIVE:
                    plan = Plan(mechanism, streams, rate, args.seconds, dsn, args.redis, prefix)
                    row = summarise(plan, run_one(plan, admin_redis))
                    runs.setdefault((mechanism, streams, rate), []).append(row)
                    shown = {k: round(v, 2) for k, v in row.items()}
                    print(mechanism, streams, rate or "asap", shown, flush=True)
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for key in admin_redis.scan_iter(match=f"{prefix}*", count=1000):
            admin_redis.delete(key)
    if runs:
        report(runs)
    if cost:
        report_cost(cost)


if __name__ == "__main__":
    main()
