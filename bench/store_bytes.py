"""What big interactions cost the store: WAL bytes written for one create, and loading a long chain.

    python bench/store_bytes.py [--input-mib 8] [--links 10] [--setting limits.max_chain_bytes=134217728]

Starts a server (scripted model, SQLite store) on loopback and reports:
- the WAL bytes one stored create with an ``--input-mib`` text input writes (the WAL file's growth: automatic
  checkpoints are off, so nothing is copied out of it meanwhile);
- then builds a chain of up to ``--links`` such interactions, each continuing the one before: for each, the
  create's time and the server's peak RSS growth during it (sampled every millisecond from /proc), until one
  is refused.
``--setting`` adds a TOML setting (a server that does not know it refuses to start).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from live import LiveServer

MODEL = "m"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def peak_during(pid: int, work: callable) -> tuple[float, int, object]:  # type: ignore[valid-type]
    """(seconds, peak RSS growth in KiB, result) of ``work()``."""
    base = rss_kib(pid)
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        result = work()
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    return elapsed, peak[0] - base, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-mib", type=float, default=8)
    parser.add_argument("--links", type=int, default=10)
    parser.add_argument("--setting", action="append", default=[], help="section.key=value (TOML value)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="store-bytes-"))
    (work / "script.json").write_text(json.dumps({"rules": [{"events": [{"text": "ok"}]}]}))
    sections: dict[str, dict[str, object]] = {
        f"models.{MODEL}": {"backend": "scripted", "script": work / "script.json"}
    }
    for setting in args.setting:
        name, value = setting.split("=", 1)
        section, key = name.rsplit(".", 1)
        sections.setdefault(section, {})[key] = json.loads(value)
    server = LiveServer(work, sections).start()
    assert server.process is not None
    wal = server.data_dir / "openinteractions.db-wal"
    text = "x" * int(args.input_mib * 1024 * 1024)
    try:
        with server.http(timeout=120) as http:
            http.post("/v1beta/interactions", json={"model": MODEL, "input": "warm"}).raise_for_status()
            before = wal.stat().st_size
            first = http.post("/v1beta/interactions", json={"model": MODEL, "input": text}).json()
            written = wal.stat().st_size - before
            print(f"WAL bytes for one {args.input_mib:g} MiB create: {written} ({written / 2**20:.1f} MiB)")
            previous = first["id"]
            for link in range(2, args.links + 1):
                body = {"model": MODEL, "input": text, "previous_interaction_id": previous}
                seconds, grown, response = peak_during(
                    server.process.pid, lambda body=body: http.post("/v1beta/interactions", json=body)
                )
                outcome = "refused" if response.status_code != 200 else response.json()["status"]
                print(f"link {link}, loading {link - 1} x {args.input_mib:g} MiB: {outcome} in {seconds:.2f} s, "
                      f"peak RSS +{grown / 1024:.0f} MiB")  # fmt: skip
                if response.status_code != 200:
                    print("  ", response.status_code, response.json()["error"]["message"])
                    break
                previous = response.json()["id"]
    finally:
        server.stop()


if __name__ == "__main__":
    main()
