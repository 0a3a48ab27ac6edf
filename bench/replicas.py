"""Several OpenInteractions servers (replicas) on one PostgreSQL database: what they serve together, how fast
a run executing on one of them reaches a reader on another, and how long a killed replica's runs wait.

    python bench/replicas.py [--rounds 4] [--seconds 4] [--concurrency 10 100] [--pg "host=127.0.0.1 ..."]

Everything on loopback, in a scratch database created here and dropped at the end. Three measurements:

1. Requests/s of streamed creates (scripted backend, ``--deltas`` text deltas, store: true) with 1, 2 and 3
   replicas, the client connections spread round-robin over them; the median of the rounds, and the ratio to
   one replica. Replicas are started and stopped one at a time, rounds alternating 1→3 and 3→1, so that drift
   (the database growing, the host's other work) does not favour one count.
2. Cross-replica event latency: background runs created on replica A (a text delta every ``--pace-ms``), each
   read live on A and on B (``GET ?stream=true``); per delta, its arrival on B minus its arrival on A (one
   client, one clock). The commit of each event is timed too, by a LISTEN of this script's own on the channel
   the server notifies in the transaction that commits the event (``oi_events``): commit → frame on A (the
   same-replica reference) and on B.
3. Failover: ``--runs`` background runs executing on A, read on B; A is killed (SIGKILL); the time from the kill
   to each run's first event that A had not committed, as B's reader receives it (the run continuing on B or
   C), with the default grace (3 s) and a short one; every run must complete, and every B reader's stream must
   be whole (event ids 1..n, the text exactly the script's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from replica_tools import (
    MODEL,
    Commits,
    Maker,
    Replica,
    Stream,
    cluster,
    follow,
    loadavg,
    scratch_database,
    server_troubles,
)
from servers import cpu_seconds

# ---- 1. throughput ----------------------------------------------------------------------------------------


def create_body(deltas: int) -> dict[str, object]:
    script = {"script": [{"repeat": deltas, "events": [{"text": "lore"}]}]}
    return {"model": MODEL, "input": json.dumps(script), "stream": True, "store": True}


async def spread(replicas: list[Replica], body: dict[str, object], concurrency: int, seconds: float):
    targets = [
        ("127.0.0.1", r.port, loadgen.build_request("127.0.0.1", r.port, "/v1beta/interactions", body, {}))
        for r in replicas
    ]
    pids = [r.proc.pid for r in replicas if r.proc is not None]
    cpu = sum(map(cpu_seconds, pids))
    result = await loadgen.run_spread(targets, concurrency, seconds)
    if result.errors:
        raise RuntimeError(f"{len(replicas)} replicas, {concurrency} clients: {result.errors} failed requests")
    result.cpu_ms = (sum(map(cpu_seconds, pids)) - cpu) * 1000 / max(len(result.samples), 1)
    return result


def throughput(make: Any, args: argparse.Namespace) -> dict[tuple[int, int], list[loadgen.Result]]:
    results: dict[tuple[int, int], list[loadgen.Result]] = {}
    body = create_body(args.deltas)
    up: list[Replica] = []
    try:
        for round_ in range(args.rounds):
            counts = [1, 2, 3] if round_ % 2 == 0 else [3, 2, 1]
            for count in counts:
                while len(up) < count:
                    up.append(make("abc"[len(up)]).start())
                    asyncio.run(spread(up[-1:], body, 4, 1.0))  # warm-up of the new one
                while len(up) > count:
                    up.pop().stop()
                for concurrency in args.concurrency:
                    result = asyncio.run(spread(up, body, concurrency, args.seconds))
                    results.setdefault((count, concurrency), []).append(result)
                    print(
                        f"# round {round_}: {count} replicas, {concurrency} clients: "
                        f"{result.requests_per_s:.0f} req/s, load {loadavg()}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for replica in up:
            replica.stop()
    return results


def report_throughput(results: dict[tuple[int, int], list[loadgen.Result]], args: argparse.Namespace) -> None:
    print(
        f"\nStreamed creates, {args.deltas} text deltas each, store: true, connections spread round-robin over "
        f"the replicas; median of {args.rounds} rounds of {args.seconds:g} s; {os.cpu_count()} CPUs\n"
    )
    print(
        "| replicas | clients | req/s | x 1 replica | TTFE p50 ms | TTFE p99 ms | total p50 ms | total p99 ms "
        "| replicas' CPU ms/req | replicas' CPU s/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        one = statistics.median(r.requests_per_s for r in results[(1, concurrency)])
        for count in (1, 2, 3):
            runs = results[(count, concurrency)]
            rps = statistics.median(r.requests_per_s for r in runs)
            row = [
                str(count),
                str(concurrency),
                f"{rps:,.0f}",
                f"{rps / one:.2f}",
                f"{statistics.median(r.p50('ttfe') for r in runs):.1f}",
                f"{statistics.median(r.pct('ttfe', 0.99) for r in runs):.1f}",
                f"{statistics.median(r.p50('total') for r in runs):.1f}",
                f"{statistics.median(r.pct('total', 0.99) for r in runs):.1f}",
                f"{statistics.median(r.cpu_ms for r in runs):.2f}",
                f"{statistics.median(r.cpu_ms * r.requests_per_s / 1000 for r in runs):.2f}",
            ]
            print("| " + " | ".join(row) + " |")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def paced(deltas: int, pause_ms: float, first_ms: float = 0) -> str:
    """A script of numbered words, a pause after each: its text says whether a stream has them all, once."""
    words = [e for i in range(deltas) for e in ({"text": f"w{i} "}, {"sleep_ms": pause_ms})]
    return json.dumps({"script": ([{"sleep_ms": first_ms}] if first_ms else []) + words})


def expected_text(deltas: int) -> str:
    return "".join(f"w{i} " for i in range(deltas))


async def create_background(http: httpx.AsyncClient, replica: Replica, script: str) -> str:
    body = {"model": MODEL, "input": script, "background": True}
    response = await http.post(f"{replica.url}/v1beta/interactions", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


# ---- 2. cross-replica latency -----------------------------------------------------------------------------


async def cross_latency(a: Replica, b: Replica, dsn: str, runs: int, args: argparse.Namespace) -> dict[str, Any]:
    # The first delta waits a while, so that every reader is attached before the deltas are committed.
    script = paced(args.latency_deltas, args.pace_ms, first_ms=1000 + 20 * runs)
    pids = [a.proc.pid if a.proc else 0, b.proc.pid if b.proc else 0]
    async with Commits(dsn) as commits, httpx.AsyncClient(timeout=60) as http:
        streams: list[tuple[str, Stream, Stream]] = []
        tasks = []
        for _ in range(runs):
            interaction_id = await create_background(http, a, script)
            on_a, on_b = Stream(), Stream()
            streams.append((interaction_id, on_a, on_b))
            tasks += [
                asyncio.create_task(follow(a.port, interaction_id, on_a)),
                asyncio.create_task(follow(b.port, interaction_id, on_b)),
            ]
        # CPU from the first delta on: the lead-in, where everything idles, would dilute it.
        while not any("step.delta" in on_a.types for _, on_a, _ in streams):
            await asyncio.sleep(0.005)
        cpu, wall, client = [cpu_seconds(pid) for pid in pids], time.perf_counter(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*tasks), 120 + args.latency_deltas * args.pace_ms / 1000 * 4)
        wall = time.perf_counter() - wall
        busy = [(cpu_seconds(pid) - before) / wall for pid, before in zip(pids, cpu, strict=True)]
        busy.append((time.process_time() - client) / wall)
        await asyncio.sleep(0.2)  # the last notifications
    b_minus_a, commit_a, commit_b, late, deltas = [], [], [], 0, 0
    first_delta, last_delta = float("inf"), 0.0
    for interaction_id, on_a, on_b in streams:
        if not (on_a.whole() and on_b.whole() and on_a.ids == on_b.ids and on_a.text == on_b.text):
            raise RuntimeError(f"{interaction_id}: the streams on A and B differ or are cut: {on_a.error} {on_b.error}")
        if "".join(on_b.text) != expected_text(args.latency_deltas):
            raise RuntimeError(f"{interaction_id}: the text on B is not the script's")
        committed, at_b = commits.committed(interaction_id), on_b.at()
        attached = max(on_a.attached, on_b.attached)
        for event_id, kind, at_a in zip(on_a.ids, on_a.types, on_a.arrived, strict=True):
            if kind != "step.delta":
                continue
            deltas += 1
            first_delta, last_delta = min(first_delta, at_a), max(last_delta, at_a)
            commit = committed.get(event_id)
            if commit is None or commit < attached:  # replayed to a reader, not live
                late += 1
                continue
            b_minus_a.append(at_b[event_id] - at_a)
            commit_a.append(at_a - commit)
            commit_b.append(at_b[event_id] - commit)
    return {
        "runs": runs,
        "deltas": deltas,
        "measured": len(b_minus_a),
        "skipped": late,
        "rate": deltas / (last_delta - first_delta) if last_delta > first_delta else float("nan"),
        "b_minus_a": b_minus_a,
        "commit_a": commit_a,
        "commit_b": commit_b,
        "busy": busy,
    }


def report_latency(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nBackground runs on A, {args.latency_deltas} text deltas each, a pause of {args.pace_ms:g} ms after "
        'each; every run read live on A and on B; milliseconds. "commit" is when this script\'s own LISTEN '
        "heard the commit's notification; CPU: busy share of one core from the first delta to the last stream's end\n"
    )
    print(
        "| runs at once | deltas measured | deltas/s on A (all runs) | B - A p50 | B - A p99 | B - A max "
        "| commit → A p50 | commit → A p99 | commit → B p50 | commit → B p99 | commit → B max "
        "| CPU A / B / client |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ms = {k: [v * 1000 for v in row[k]] for k in ("b_minus_a", "commit_a", "commit_b")}
        cells = [
            str(row["runs"]),
            f"{row['measured']:,} of {row['deltas']:,}",
            f"{row['rate']:,.0f}",
            f"{statistics.median(ms['b_minus_a']):.2f}",
            f"{pct(ms['b_minus_a'], 0.99):.2f}",
            f"{max(ms['b_minus_a']):.1f}",
            f"{statistics.median(ms['commit_a']):.2f}",
            f"{pct(ms['commit_a'], 0.99):.2f}",
            f"{statistics.median(ms['commit_b']):.2f}",
            f"{pct(ms['commit_b'], 0.99):.2f}",
            f"{max(ms['commit_b']):.1f}",
            " / ".join(f"{share:.0%}" for share in row["busy"]),
        ]
        print("| " + " | ".join(cells) + " |")


# ---- 3. failover ------------------------------------------------------------------------------------------


async def failover(replicas: list[Replica], dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    a, b, c = replicas
    script = paced(args.failover_deltas, args.pace_ms)
    async with httpx.AsyncClient(timeout=60) as http:
        ids = [await create_background(http, a, script) for _ in range(args.runs)]
        streams = [Stream() for _ in ids]
        tasks = [asyncio.create_task(follow(b.port, i, s)) for i, s in zip(ids, streams, strict=True)]
        # Every run under way and followed live on B. Early, because the scripted backend's continuation plays
        # the pauses of the part it skips again (its first new event comes that much later).
        while not all(len(s.ids) >= 15 for s in streams):
            await asyncio.sleep(0.01)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            killed = time.perf_counter()
            a.kill()
            claimed = await _claims(conn, ids)
            last_on_a = claimed.pop("last on A")
        await asyncio.wait_for(asyncio.gather(*tasks), 120 + args.failover_deltas * args.pace_ms / 1000 * 4)
        statuses = [(await http.get(f"{b.url}/v1beta/interactions/{i}")).json().get("status") for i in ids]
    waits, claims, replayed, whole = [], [], [], 0
    for interaction_id, stream in zip(ids, streams, strict=True):
        last = last_on_a[interaction_id]
        after = stream.at().get(last + 1)
        if after is not None:
            waits.append(after - killed)
            claims.append(claimed[interaction_id] - killed)
            events = zip(stream.ids, stream.types, strict=True)
            played = sum(1 for i, kind in events if i <= last and kind == "step.delta")
            replayed.append(played * args.pace_ms / 1000)
        whole += stream.whole() and "".join(stream.text) == expected_text(args.failover_deltas)
    on_b, on_c = b.continued() & set(ids), c.continued() & set(ids)
    return {
        "waits": waits,
        "claims": claims,
        "replayed": replayed,
        "runs": len(ids),
        "completed": statuses.count("completed"),
        "whole": whole,
        "on_b": len(on_b),
        "on_c": len(on_c),
    }


async def _claims(conn: psycopg.AsyncConnection[Any], ids: list[str]) -> dict[str, Any]:
    """When each run's lease moved to another server (polled every 10 ms), and the last event each had
    committed (read once A is surely gone: nobody takes a run over before the grace)."""
    query = "SELECT id, lease_owner FROM interactions WHERE id = ANY(%s)"
    owners = dict(await (await conn.execute(query, [ids])).fetchall())
    await asyncio.sleep(0.1)
    cursor = await conn.execute(
        "SELECT interaction_id, max(seq) FROM events WHERE interaction_id = ANY(%s) GROUP BY interaction_id", [ids]
    )
    moved: dict[str, Any] = {"last on A": {row[0]: int(row[1]) for row in await cursor.fetchall()}}
    while len(moved) <= len(ids):
        rows = await (await conn.execute(query, [ids])).fetchall()
        now = time.perf_counter()  # the lease moved within the last poll (10 ms and a query)
        for interaction_id, owner in rows:
            if owner != owners[interaction_id] and interaction_id not in moved:
                moved[interaction_id] = now
        await asyncio.sleep(0.01)
    return moved


def run_failover(make: Any, args: argparse.Namespace) -> dict[float, list[dict[str, Any]]]:
    results: dict[float, list[dict[str, Any]]] = {}
    for trial in range(args.trials):
        for grace in args.grace:
            with cluster(lambda name, g=grace: make(name, g), 3) as replicas:
                row = asyncio.run(failover(replicas, make.dsn, args))
            results.setdefault(grace, []).append(row)
            waits = ", ".join(f"{w:.2f}" for w in sorted(row["waits"]))
            claims = ", ".join(f"{w:.2f}" for w in sorted(row["claims"]))
            print(
                f"# failover trial {trial}, grace {grace:g} s: claimed {claims}; next event {waits}; "
                f"completed {row['completed']}/{row['runs']}, whole {row['whole']}; load {loadavg()}",
                file=sys.stderr,
                flush=True,
            )
    return results


def report_failover(results: dict[float, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.runs} background runs on A ({args.failover_deltas} deltas, {args.pace_ms:g} ms apart), each "
        f"read on B; A killed (SIGKILL); {args.trials} trials per grace, a fresh A, B, C each; "
        f"run_claim_seconds {args.claim:g}; seconds from the kill to each run's next event on B\n"
    )
    print(
        "| store.replica_grace_seconds | runs | kill → lease taken p50 s | max s | kill → next event on B p50 s "
        "| max s | min s | of which replayed pauses p50 s | continued on B / C | completed "
        "| B streams whole (ids 1..n, exact text) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for grace, rows in results.items():
        waits, claims, replayed = ([w for row in rows for w in row[k]] for k in ("waits", "claims", "replayed"))
        total = sum(row["runs"] for row in rows)
        cells = [
            f"{grace:g}",
            str(total),
            f"{statistics.median(claims):.2f}",
            f"{max(claims):.2f}",
            f"{statistics.median(waits):.2f}",
            f"{max(waits):.2f}",
            f"{min(waits):.2f}",
            f"{statistics.median(replayed):.2f}",
            f"{sum(r['on_b'] for r in rows)} / {sum(r['on_c'] for r in rows)}",
            f"{sum(r['completed'] for r in rows)}/{total}",
            f"{sum(r['whole'] for r in rows)}/{total}",
        ]
        print("| " + " | ".join(cells) + " |")


# ---- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--deltas", type=int, default=64, help="text deltas of each throughput create")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--pace-ms", type=float, default=10.0, help="pause after each delta of a background run")
    parser.add_argument("--latency-runs", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--latency-deltas", type=int, default=300)
    parser.add_argument("--runs", type=int, default=10, help="background runs on the replica that is killed")
    parser.add_argument("--failover-deltas", type=int, default=600)
    parser.add_argument("--grace", type=float, nargs="+", default=[3.0, 0.5])
    parser.add_argument("--claim", type=float, default=1.0, help="limits.run_claim_seconds")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "latency", "failover"])
    args = parser.parse_args()

    print(f"load average at the start: {loadavg()}", flush=True)
    loads = []
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.pg) as (dsn, url):
        make = Maker(Path(tmp), dsn, url, args.claim)
        if "throughput" not in args.skip:
            report_throughput(throughput(make, args), args)
            loads.append(f"after the throughput: {loadavg()}")
        if "latency" not in args.skip:
            with cluster(make, 3) as (a, b, _c):
                rows = [asyncio.run(cross_latency(a, b, dsn, runs, args)) for runs in args.latency_runs]
            report_latency(rows, args)
            loads.append(f"after the latency: {loadavg()}")
        if "failover" not in args.skip:
            report_failover(run_failover(make, args), args)
            loads.append(f"after the failover: {loadavg()}")
        troubles = server_troubles(Path(tmp))
    print("\nload average (1, 5, 15 min) " + "; ".join(loads))
    print(f"server log lines at ERROR or tracebacks: {len(troubles)}")
    for line in troubles[:20]:
        print(f"    {line}")


if __name__ == "__main__":
    main()
