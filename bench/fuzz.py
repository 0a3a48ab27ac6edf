"""A long fuzz run, for the figures in docs/security.md: the server and checks of tests/test_fuzz.py, run
again and again with seeds 1, 2, ... until the time is up (the coverage phase once: it sends the same
requests whatever the seed). Prints the requests sent, their statuses, the 5xx and every finding; exits 1
if there was any.

Run: python bench/fuzz.py [--seconds 300] [--examples 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import Report, fuzz_server, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="start no run after this long")
    parser.add_argument("--examples", type=int, default=100, help="fuzzing-phase requests per operation and run")
    args = parser.parse_args()
    report = Report()
    with tempfile.TemporaryDirectory() as workdir:
        server = fuzz_server(Path(workdir)).start()
        started = time.monotonic()
        seed = 0
        try:
            while time.monotonic() - started < args.seconds:
                seed += 1
                run(server, seed=seed, max_examples=args.examples, coverage=seed == 1, report=report)
                print(f"seed {seed}, {time.monotonic() - started:.0f} s: {report.summary()}", flush=True)
        finally:
            server.stop()
        tracebacks = sum("Traceback" in line for line in server.log)
    print(f"\n{seed} runs in {time.monotonic() - started:.0f} s, {tracebacks} tracebacks in the server log")
    print(report)
    if report.findings or report.engine_errors:
        print("\n" + report.problems())
    return 1 if report.findings or report.engine_errors or report.server_errors or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
