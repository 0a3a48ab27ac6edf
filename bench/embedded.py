"""Embedded-model benchmark: OpenInteractions' llamacpp backend against the in-process ceiling and
llama-cpp-python's own server, side by side in one run, with the same GGUF, llama.cpp build and thread count.

    python bench/embedded.py            # full run: about 6 minutes on a quiet 2-core machine, at most ~10
    python bench/embedded.py --quick    # about 2 minutes on a quiet machine, at most ~4
    python bench/embedded.py --help     # sizes, repetitions, thread count, --raw FILE to keep every sample

Targets (each a separate process; every socket is bound to 127.0.0.1):

- ``in-process ceiling``: bench/embedded_direct.py, llama.cpp driven through llama-cpp-python's low-level API
  in its own process (no HTTP, no asyncio, no threads): the chat prompt rendered with the GGUF's template,
  tokenised, prefilled, then one ``llama_decode`` per token, several sequences batched together exactly as
  the server's engine does (same context: ``parallel`` 4 x 4096 tokens, batch 512, no flash attention). Times
  are taken in that process, from the start of the request to the sampling of each token.
- ``OpenInteractions``: ``python -m openinteractions serve`` with ``backend = "llamacpp"`` and an explicit
  ``threads``; ``POST /v1beta/interactions`` with ``stream: true``; tokens are the ``step.delta`` text events,
  counts come from ``usage.total_output_tokens``; conversations continue with ``previous_interaction_id``.
- ``llama_cpp.server``: ``python -m llama_cpp.server --model GGUF --n_threads K --n_threads_batch K
  --n_ctx 4096`` (its defaults otherwise, so concurrent requests interrupt each other) from a separate venv,
  ``bench/.venv-llama-server`` (the script says how to create it when it is missing); ``/v1/chat/completions``
  with ``stream: true`` and ``repeat_penalty: 1`` (so that greedy decoding picks the same tokens as the others);
  one content chunk is one token; a conversation resends its whole history every turn.

All targets decode greedily by default (``temperature: 0``, fixed ``seed``; OpenInteractions gets them as
``generation_config``), with fixed prompts; a generation ends at the token limit or at the end-of-turn token.
Targets run interleaved, round by round, in a rotating order, because a 2-core machine is noisy.

Tables (Markdown, on stdout). "x ceiling" is the target's figure divided by the ceiling's from the same run:
above 1 is faster for throughputs, slower for latencies.

1. One stream, repeated with a different ~55-token story prompt each time. The prompts share their first ~32
   tokens (the template's default system message, the instruction's head): llama_cpp.server and
   OpenInteractions reuse them from the previous request, the ceiling always prefills everything, which shows
   in the TTFT column.
   ``decode tok/s`` = (output tokens - 1) / (time of the last token - time of the first token), the median of
   the repetitions with (min-max) after it; ``spread`` = max / min of the repetitions (a two-speed target shows
   up as a large spread, but so does a host that slows down between repetitions: the line under the table
   divides each repetition's rate by the ceiling's, measured just before or after it, and gives the spread of
   those ratios too); ``TTFT ms`` = time from sending the request to the first text token.
2. N concurrent streams sent at once with different prompts: ``aggregate tok/s`` = all output tokens / (time
   of the last token of any stream - the send); ``decode-phase tok/s`` = the tokens after each stream's first /
   (last token of any stream - first token of any stream), prefill mostly left out; ``x 1 stream`` compares
   with the same target's 1-stream row;
   ``first token p50 / max`` pools every stream of every repetition; ``all progressing`` counts the repetitions
   in which every stream's first token arrived before any stream had finished (streams served side by side,
   not one after another); ``tokens/stream`` is the mean number of tokens each stream received.
3. Multi-turn: C conversations advance round-robin (turn 1 of each, then turn 2 of each, ...), each turn adding
   the model's previous answer and a new user message of about 100 tokens. ``turn 1`` / ``turn 5`` = TTFT at
   that turn; ``re-prefill`` = TTFT of the same turn-5 prompt sent as a fresh conversation (its system line
   altered at the start so that no cache can serve it; the ceiling clears its KV cache); ``turn 5 /
   re-prefill`` is what reusing the conversation's cache saves; ``prompt / cached tokens`` at turn 5 is what
   the target reports (llama_cpp.server reports none in streams).

Each table is followed by the targets of the issue and whether OpenInteractions met them in this run.

Noise. Two cores leave no room for anything else: another process running llama.cpp at the same time slows a
2-thread decode several times over (its OpenMP threads wait at every barrier for a descheduled thread). So the
benchmark measures, for every generation, the share of all CPU time that processes other than its own used
meanwhile (/proc/stat minus its own processes); before each round it waits until that share is at most
``--noisy`` (default 10 %; up to ``--max-wait`` s a round and ``--wait-budget`` s in all), and it leaves the
generations that still ran beside such load out of the figures (``noisy, left out``: dropped/total; in table 3
for turn 1, turn 5 and the re-prefill; when every sample of a cell is noisy they are all kept and the cell says
so). The last line says how noisy the run was.

Seeds. Every target gets the same ``seed`` by default; ``--no-seed`` sends none.
``--only single concurrent multiturn`` runs a subset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedded_sse import ServerError, Stream, stream
from openinteractions.backends.llamacpp.models import default_model_path
from servers import ROOT, free_port

BENCH = Path(__file__).resolve().parent
LLAMA_VENV = BENCH / ".venv-llama-server"
WHEEL_GLOB = "~/.cache/openinteractions/llama-cpp-python/*/llama_cpp_python-0.3.36-*.whl"
CEILING, OURS, LLAMA = "in-process ceiling", "OpenInteractions", "llama_cpp.server"
MODEL_NAME = "bench-smollm2"
SECTIONS = ("single", "concurrent", "multiturn")

SUBJECTS = [
    "a lighthouse keeper",
    "a clockmaker",
    "a young dragon",
    "a retired astronaut",
    "a street musician",
    "a baker in Lyon",
    "a lost robot",
    "a fox in winter",
    "a ship's cat",
    "a mountain guide",
    "a beekeeper",
    "a night-train conductor",
    "a museum guard",
    "a deep-sea diver",
    "a village postman",
    "an old fisherman",
]

TOPICS = ["a two-week trip to Japan", "renovating an old farmhouse", "starting a community garden"]
TURNS = [
    "I need help with {topic}. Some background first: I have a limited budget, I can spend about ten hours a "
    "week on it, and I have never done anything like this before. My partner is enthusiastic but busy, and a "
    "friend offered to help on weekends. I would like a realistic plan that starts small, avoids the usual "
    "beginner mistakes and leaves room for surprises. What should the first month look like?",
    "Thanks. About {topic} again: the budget is tighter than I said, maybe two thirds of it, because a bill "
    "came in. I would rather cut scope than quality. Also, the friend who offered to help can only come every "
    "other weekend now. Which parts of the plan would you drop or postpone, and which ones are worth keeping "
    "even if everything else slips? Please give me the reasons, not just the list.",
    "Another question about {topic}. I keep reading contradictory advice online: some people say to plan "
    "everything in detail up front, others say to start immediately and adjust as you go. I tend to "
    "over-plan and then lose motivation. Given what I told you about my time and budget, which approach fits "
    "me better, and how do I keep momentum during the boring middle part of a project like this one?",
    "Something went wrong with {topic} this week: a supplier cancelled, two days of work were lost, and I am "
    "behind schedule. I am tempted to rush the next steps to catch up, but I suspect that would cause more "
    "problems later. How would you re-plan the next three weeks? Which risks should I watch now that the "
    "schedule has no slack left, and what would be an early sign that I need to change course?",
    "Last question about {topic} for today. Looking back at everything we discussed, write me a short "
    "checklist I can print and keep: the decisions already made, the open questions, the weekly routine, and "
    "the two or three warning signs we talked about. Keep it practical, and tell me which item on it you "
    "think I am most likely to neglect, given the way I described myself and my habits.",
]


def llama_venv_missing_message() -> str:
    return f"""\
bench/embedded.py needs llama-cpp-python's server in a separate venv, {LLAMA_VENV}, which is missing.
Create it once (it installs the same portable llama-cpp-python wheel the project built, plus the server extras;
pip must never build llama-cpp-python itself here: a default build crashes on CPUs that advertise AMX):

    python3 -m venv {LLAMA_VENV}
    {LLAMA_VENV}/bin/pip install {WHEEL_GLOB} \\
        fastapi sse-starlette starlette-context pydantic-settings uvicorn

(or run without that target: python bench/embedded.py --skip-llama-server)"""


def _lib_digest(python: str) -> str:
    """A digest of the llama.cpp shared libraries that ``python`` imports, to check both venvs run one build."""
    code = "import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), 'lib'))"
    lib = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256()
    for path in sorted(Path(lib).glob("*.so*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


# ---- processes ------------------------------------------------------------------------------------------------


_CHILDREN: list[subprocess.Popen[str]] = []


def _interrupted(signum: int, _frame: Any) -> None:
    """Ctrl-C or SIGTERM: stop the children at once (a worker thread may be waiting for one to answer, and the
    event loop waits for that thread when it shuts down), then unwind."""
    for proc in _CHILDREN:
        if proc.poll() is None:
            proc.terminate()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the benchmark dies without cleaning up (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def child(args: list[str], log: Path, *, pipes: bool = False) -> Iterator[subprocess.Popen[str]]:
    """Run ``args`` until the block ends, stderr (and stdout unless ``pipes``) to ``log``. The child gets its own
    session so that Ctrl-C reaches only this script, which then stops it."""
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else log_file,
            stderr=log_file,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            cwd=ROOT,
        )
        _CHILDREN.append(proc)
        try:
            yield proc
        finally:
            _stop(proc)


def wait_for_port(port: int, proc: subprocess.Popen[str], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---- what a target is asked ------------------------------------------------------------------------------------


@dataclass
class Ask:
    """One generation: the whole conversation so far (``messages``, ending with the new user message)."""

    messages: list[dict[str, str]]
    slot: int = 0  # the ceiling's sequence
    reuse: bool = False  # the ceiling: keep the prefix that sequence caches (a conversation's next turn)
    previous_id: str | None = None  # OpenInteractions: continue this interaction, sending the new message only


@dataclass
class Sampling:
    max_tokens: int
    temperature: float
    seed: int | None


class Target:
    name: str

    async def run(self, asks: list[Ask], sampling: Sampling) -> list[Stream]:
        raise NotImplementedError


class Ceiling(Target):
    name = CEILING

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        ready = self._read()
        self.system_info = str(ready.get("system_info", "")).strip()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the ceiling process exited with {self.proc.wait()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"ceiling: {reply['error']}")
        return reply

    def _call(self, command: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        assert self.proc.stdin is not None
        sent = time.perf_counter()
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return sent, self._read()

    async def run(self, asks: list[Ask], sampling: Sampling) -> list[Stream]:
        command = {
            "op": "generate",
            "jobs": [{"seq": a.slot, "messages": a.messages, "reuse": a.reuse} for a in asks],
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "seed": sampling.seed or 0,
        }
        sent, reply = await asyncio.to_thread(self._call, command)
        out = []
        for job in reply["jobs"]:
            times = [sent + t for t in job["times"]]
            out.append(
                Stream(
                    sent=sent,
                    times=times,
                    text=job["text"],
                    tokens=job["tokens"],
                    finish=job["finish"],
                    end=times[-1] if times else sent,
                    prompt_tokens=job["prompt_tokens"],
                    cached_tokens=job["cached_tokens"],
                )
            )
        return out


class Interactions(Target):
    name = OURS

    def __init__(self, port: int) -> None:
        self.port = port

    def body(self, ask: Ask, sampling: Sampling) -> dict[str, Any]:
        system = [m["content"] for m in ask.messages if m["role"] == "system"]
        turns = [m for m in ask.messages if m["role"] != "system"]
        config: dict[str, Any] = {"max_output_tokens": sampling.max_tokens, "temperature": sampling.temperature}
        if sampling.seed is not None:
            config["seed"] = sampling.seed
        body: dict[str, Any] = {"model": MODEL_NAME, "stream": True, "generation_config": config}
        if system:
            body["system_instruction"] = system[0]  # per request: it is not inherited along the chain
        if ask.previous_id is not None:
            body["previous_interaction_id"] = ask.previous_id
            body["input"] = turns[-1]["content"]
        elif len(turns) == 1:
            body["input"] = turns[0]["content"]
        else:
            body["input"] = [
                {"role": "model" if m["role"] == "assistant" else "user", "content": m["content"]} for m in turns
            ]
        return body

    async def run(self, asks: list[Ask], sampling: Sampling) -> list[Stream]:
        return list(
            await asyncio.gather(
                *(stream(self.port, "/v1beta/interactions", self.body(a, sampling), "interactions") for a in asks)
            )
        )


class LlamaServer(Target):
    name = LLAMA

    def __init__(self, port: int) -> None:
        self.port = port

    async def run(self, asks: list[Ask], sampling: Sampling) -> list[Stream]:
        def body(ask: Ask) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "messages": ask.messages,
                "stream": True,
                "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature,
                "repeat_penalty": 1.0,
                # the ceiling's and OpenInteractions' sampling chain when temperature > 0
                "top_k": 64,
                "top_p": 0.95,
                "min_p": 0.0,
            }
            if sampling.seed is not None:
                payload["seed"] = sampling.seed
            return payload

        return list(await asyncio.gather(*(stream(self.port, "/v1/chat/completions", body(a), "chat") for a in asks)))


# ---- scenarios ------------------------------------------------------------------------------------------------


def story(index: int) -> list[dict[str, str]]:
    subject = SUBJECTS[index % len(SUBJECTS)]
    prompt = (
        f"Write a long, detailed story about {subject}. "
        "Describe the places, the people and what happens, chapter by chapter."
    )
    if index >= len(SUBJECTS):
        prompt += f" (Version {index // len(SUBJECTS) + 1}.)"
    return [{"role": "user", "content": prompt}]


# ---- noise: this machine is shared, and 2 cores leave no room for anyone else ---------------------------------


class CpuMeter:
    """How much CPU other processes take: all busy CPU time (/proc/stat) minus that of this benchmark's own
    processes (this one and its children), as a share of all CPU time."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = [os.getpid(), *pids]

    def snapshot(self) -> tuple[int, int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        total = sum(fields[:8])  # guest time is already counted in user
        busy = total - fields[3] - fields[4]  # minus idle and iowait
        ours = 0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                parts = stat[stat.rindex(")") + 2 :].split()
                ours += int(parts[11]) + int(parts[12])  # utime, stime (all threads)
        return busy, total, ours

    def foreign_since(self, before: tuple[int, int, int]) -> float:
        busy, total, ours = self.snapshot()
        if total <= before[1]:
            return 0.0
        return max(0, (busy - before[0]) - (ours - before[2])) / (total - before[1])


@dataclass
class Results:
    single: dict[str, list[Stream]] = field(default_factory=dict)
    concurrent: dict[tuple[str, int], list[list[Stream]]] = field(default_factory=dict)
    turns: dict[tuple[str, int], list[Stream]] = field(default_factory=dict)  # (target, turn) -> one per conversation
    reprefill: dict[str, list[Stream]] = field(default_factory=dict)
    foreign: list[float] = field(default_factory=list)  # every generation's
    waited: float = 0.0


@dataclass
class Bench:
    targets: list[Target]
    args: argparse.Namespace
    meter: CpuMeter
    res: Results = field(default_factory=Results)

    async def run(self, target: Target, asks: list[Ask], sampling: Sampling, what: str) -> list[Stream]:
        before = self.meter.snapshot()
        streams = await target.run(asks, sampling)
        foreign = self.meter.foreign_since(before)
        self.res.foreign.append(foreign)
        for s in streams:
            s.foreign = foreign
            if not s.times:
                print(f"  note: {target.name}, {what}: a stream received no token ({s.finish})", file=sys.stderr)
        return streams

    async def settle(self) -> None:
        """Wait (up to --max-wait seconds) until other processes leave the CPUs alone."""
        if self.args.max_wait <= 0 or self.res.waited >= self.args.wait_budget:
            return
        started = time.monotonic()
        while True:
            before = self.meter.snapshot()
            await asyncio.sleep(0.3)
            foreign = self.meter.foreign_since(before)
            waited = time.monotonic() - started
            if foreign <= self.args.noisy:
                break
            if waited >= self.args.max_wait or self.res.waited + waited >= self.args.wait_budget:
                progress(f"other processes still use {foreign:.0%} of the CPU time; going on")
                break
            if waited < 0.4:
                progress(f"other processes use {foreign:.0%} of the CPU time; waiting for them to quiet down")
        if waited > 0.4:
            self.res.waited += waited


def rotate(targets: list[Target], round_: int) -> list[Target]:
    k = round_ % len(targets)
    return targets[k:] + targets[:k]


async def warm_up(bench: Bench, sampling: Sampling) -> None:
    for target in bench.targets:
        await target.run([Ask([{"role": "user", "content": "Say hello."}])], Sampling(8, sampling.temperature, 1))


async def run_single(bench: Bench, sampling: Sampling) -> None:
    args, res = bench.args, bench.res
    for rep in range(args.reps):
        for target in rotate(bench.targets, rep):
            await bench.settle()
            [s] = await bench.run(target, [Ask(story(rep))], sampling, "one stream")
            res.single.setdefault(target.name, []).append(s)
        progress(f"one stream: repetition {rep + 1}/{args.reps}")


async def run_concurrent(bench: Bench, sampling: Sampling) -> None:
    args, res = bench.args, bench.res
    base = args.reps
    for rep in range(args.concurrent_reps):
        for n in args.concurrency:
            for target in rotate(bench.targets, rep + n):
                await bench.settle()
                asks = [Ask(story(base + i), slot=i) for i in range(n)]
                streams = await bench.run(target, asks, sampling, f"{n} streams")
                res.concurrent.setdefault((target.name, n), []).append(streams)
            base += n
        progress(f"concurrent streams: repetition {rep + 1}/{args.concurrent_reps}")


async def run_multiturn(bench: Bench, sampling: Sampling) -> None:
    args, res = bench.args, bench.res
    for rep in range(args.turn_reps):
        for target in rotate(bench.targets, rep):
            histories: list[list[dict[str, str]]] = []
            last_ids: list[str | None] = []
            for k in range(args.conversations):
                system = f"Session {rep}-{k}. You are a helpful assistant; answer briefly and concretely."
                histories.append([{"role": "system", "content": system}])
                last_ids.append(None)
            for turn in range(args.turns):
                await bench.settle()
                for k in range(args.conversations):
                    topic = TOPICS[(k + rep) % len(TOPICS)]
                    user = TURNS[turn % len(TURNS)].format(topic=topic)
                    history = [*histories[k], {"role": "user", "content": user}]
                    ask = Ask(history, slot=k, reuse=True, previous_id=last_ids[k])
                    [s] = await bench.run(target, [ask], sampling, f"conversation {k} turn {turn + 1}")
                    res.turns.setdefault((target.name, turn + 1), []).append(s)
                    histories[k] = [*history, {"role": "assistant", "content": s.text}]
                    last_ids[k] = s.interaction_id
            # the last turn's prompt again, as a fresh conversation that no cache holds
            await bench.settle()
            for k in range(args.conversations):
                prompt = histories[k][:-1]
                fresh = [{"role": "system", "content": f"Fresh {rep}-{k}: " + prompt[0]["content"]}, *prompt[1:]]
                ask = Ask(fresh, slot=args.conversations, reuse=False)
                [s] = await bench.run(target, [ask], sampling, "re-prefill")
                res.reprefill.setdefault(target.name, []).append(s)
        progress(f"multi-turn: repetition {rep + 1}/{args.turn_reps}")


_START = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


# ---- report ---------------------------------------------------------------------------------------------------


def _values(items: list[float | None]) -> list[float]:
    return [v for v in items if v is not None]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    if not values:
        return "-"
    return f"{fmt(med(values))} ({fmt(min(values))}-{fmt(max(values))})"


def tps(v: float) -> str:
    return f"{v:.1f}"


def ms(v: float) -> str:
    return f"{v * 1000:.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and b == b and a == a else "-"


def verdict(ok: bool | None) -> str:
    return "**met**" if ok else ("not measured" if ok is None else "**missed**")


class Clean:
    """Drops the samples taken while other processes used more than --noisy of the CPU time (all of them are
    kept when every one is noisy), and says how many it dropped."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def streams(self, streams: list[Stream]) -> tuple[list[Stream], str]:
        kept = [s for s in streams if (s.foreign or 0.0) <= self.limit]
        return self._pick(streams, kept)

    def reps(self, reps: list[list[Stream]]) -> tuple[list[list[Stream]], str]:
        kept = [r for r in reps if (r[0].foreign or 0.0) <= self.limit]
        return self._pick(reps, kept)

    @staticmethod
    def _pick(items: list[Any], kept: list[Any]) -> tuple[list[Any], str]:
        if not kept:
            return items, f"all {len(items)} noisy"
        return kept, f"{len(items) - len(kept)}/{len(items)}"


def aggregate(streams: list[Stream]) -> float:
    sent = min(s.sent for s in streams)
    last = max((s.times[-1] for s in streams if s.times), default=sent)
    return sum(s.tokens for s in streams) / (last - sent) if last > sent else 0.0


def decode_phase(streams: list[Stream]) -> float | None:
    """Tokens after each stream's first / (last token of any stream - first token of any stream)."""
    started = [s for s in streams if len(s.times) >= 2]
    if not started:
        return None
    span = max(s.times[-1] for s in started) - min(s.times[0] for s in started)
    return sum(s.tokens - 1 for s in started) / span if span > 0 else None


def progressing(streams: list[Stream]) -> bool:
    """Every stream got its first token before any stream got its last."""
    if any(not s.times for s in streams):
        return False
    return len(streams) == 1 or max(s.times[0] for s in streams) < min(s.times[-1] for s in streams)


def report(names: list[str], args: argparse.Namespace, res: Results) -> None:
    clean = Clean(args.noisy)
    if "single" in args.only:
        report_single(names, args, res, clean)
    if "concurrent" in args.only:
        report_concurrent(names, args, res, clean)
    if "multiturn" in args.only:
        report_multiturn(names, args, res, clean)
    noisy = sum(f > args.noisy for f in res.foreign)
    print(
        f"\nNoise: other processes used {statistics.mean(res.foreign or [0]):.0%} of the CPU time on average during "
        f"the generations; {noisy} of {len(res.foreign)} generations ran while they used more than "
        f"{args.noisy:.0%} and are left out of the figures above (unless a cell had no quiet sample); "
        f"{res.waited:.0f} s were spent waiting for quiet."
    )


def report_single(names: list[str], args: argparse.Namespace, res: Results, clean: Clean) -> None:
    print("\n### 1. One stream\n")
    print(f"{args.reps} repetitions, {args.max_tokens} tokens at most, story prompts of ~55 tokens.\n")
    print(
        "| target | decode tok/s | x ceiling | spread (max/min) | TTFT ms | x ceiling | tokens/stream "
        "| noisy, left out |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base, _ = clean.streams(res.single.get(CEILING, []))
    base_tps, base_ttft = med(_values([s.decode_tps for s in base])), med(_values([s.ttft for s in base]))
    ours_ratio, ours_spread = None, None
    for name in names:
        streams, dropped = clean.streams(res.single.get(name, []))
        rates, ttfts = _values([s.decode_tps for s in streams]), _values([s.ttft for s in streams])
        sp = max(rates) / min(rates) if rates else float("nan")
        if name == OURS and rates:
            ours_ratio, ours_spread = med(rates) / base_tps, sp
        tokens = statistics.mean(s.tokens for s in streams) if streams else 0
        print(
            f"| {name} | {spread(rates, tps)} | {ratio(med(rates), base_tps)} | {sp:.2f} | {spread(ttfts, ms)} | "
            f"{ratio(med(ttfts), base_ttft)} | {tokens:.0f} | {dropped} |"
        )
    paired = paired_ratios(res.single.get(OURS, []), res.single.get(CEILING, []), clean.limit)
    paired_spread = max(paired) / min(paired) if paired else None
    if paired:
        print(
            f"\nRepetition by repetition against the ceiling's run just before or after it (the host's drift, which "
            f"moves both, cancels): ratios {min(paired):.2f}-{max(paired):.2f}, spread {paired_spread:.2f} "
            f"over {len(paired)} repetitions."
        )
    ok = None if ours_ratio is None or ours_spread is None else ours_ratio >= 0.85 and ours_spread <= args.steady
    shown = "-" if ours_ratio is None else f"{ours_ratio:.2f}x, spread {ours_spread:.2f}"
    print(
        f"\nTarget: OpenInteractions decode >= 0.85x the ceiling, steadily (spread <= {args.steady:g}): "
        f"{shown} -> {verdict(ok)}"
    )


def paired_ratios(ours: list[Stream], ceiling: list[Stream], limit: float) -> list[float]:
    """Our decode rate over the ceiling's in the same repetition (the two run back to back), for repetitions
    where neither sample is noisy. A server with two speeds shows here; a host that slows down does not."""
    out = []
    for mine, theirs in zip(ours, ceiling, strict=False):
        clean = (mine.foreign or 0.0) <= limit and (theirs.foreign or 0.0) <= limit
        if clean and mine.decode_tps and theirs.decode_tps:
            out.append(mine.decode_tps / theirs.decode_tps)
    return out


def report_concurrent(names: list[str], args: argparse.Namespace, res: Results, clean: Clean) -> None:
    print("\n### 2. Concurrent streams\n")
    print(f"{args.concurrent_reps} repetitions, {args.max_tokens} tokens at most per stream, all sent at once.\n")
    print(
        "| target | streams | aggregate tok/s | x ceiling | x 1 stream | decode-phase tok/s | x 1 stream "
        "| first token p50 ms | first token max ms | all progressing | tokens/stream | noisy, left out |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    kept = {key: clean.reps(reps) for key, reps in res.concurrent.items()}
    agg = {key: med([aggregate(r) for r in reps]) for key, (reps, _) in kept.items()}
    dec = {key: med(_values([decode_phase(r) for r in reps])) for key, (reps, _) in kept.items()}
    nan = float("nan")
    for n in args.concurrency:
        for name in names:
            if (name, n) not in kept:
                continue
            reps, dropped = kept[(name, n)]
            firsts = _values([s.ttft for r in reps for s in r])
            good = sum(progressing(r) for r in reps)
            tokens = statistics.mean(s.tokens for r in reps for s in r)
            a, d = agg[(name, n)], dec[(name, n)]
            cells = [
                name,
                str(n),
                spread([aggregate(r) for r in reps], tps),
                ratio(a, agg.get((CEILING, n), nan)),
                ratio(a, agg.get((name, 1), nan)),
                tps(d),
                ratio(d, dec.get((name, 1), nan)),
                ms(pct(firsts, 0.5)),
                ms(max(firsts)) if firsts else "-",
                f"{good}/{len(reps)}",
                f"{tokens:.0f}",
                dropped,
            ]
            print("| " + " | ".join(cells) + " |")
    top = max(args.concurrency)
    if (OURS, top) in kept and (OURS, 1) in kept:
        reps, _ = kept[(OURS, top)]
        good = sum(progressing(r) for r in reps)
        gain, dgain = agg[(OURS, top)] / agg[(OURS, 1)], dec[(OURS, top)] / dec[(OURS, 1)]
        ceiling_gain = agg.get((CEILING, top), nan) / agg.get((CEILING, 1), nan)
        ceiling_dgain = dec.get((CEILING, top), nan) / dec.get((CEILING, 1), nan)
        ok = good == len(reps) and gain >= 1.5
        print(
            f"\nTarget: {top} concurrent OpenInteractions streams all progressing, aggregate >= 1.5x one stream: "
            f"{good}/{len(reps)} repetitions progressing, aggregate {gain:.2f}x -> {verdict(ok)} "
            f"(decode phase {dgain:.2f}x; the ceiling's own gains: {ceiling_gain:.2f}x and {ceiling_dgain:.2f}x)"
        )


def report_multiturn(names: list[str], args: argparse.Namespace, res: Results, clean: Clean) -> None:
    print("\n### 3. Multi-turn conversations\n")
    print(
        f"{args.turn_reps} repetition(s) of {args.conversations} conversations advancing round-robin, "
        f"{args.turns} turns, {args.turn_tokens} tokens at most per answer.\n"
    )
    last = args.turns
    print(
        f"| target | turn 1 TTFT ms | turn {last} TTFT ms | x ceiling | re-prefill TTFT ms | "
        f"turn {last} / re-prefill | turn-{last} prompt / cached tokens | noisy, left out |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base_streams, _ = clean.streams(res.turns.get((CEILING, last), []))
    base_last = med(_values([s.ttft for s in base_streams]))
    ours_gain = None
    for name in names:
        first_streams, d1 = clean.streams(res.turns.get((name, 1), []))
        final_streams, d5 = clean.streams(res.turns.get((name, last), []))
        fresh_streams, dr = clean.streams(res.reprefill.get(name, []))
        first = _values([s.ttft for s in first_streams])
        final = _values([s.ttft for s in final_streams])
        fresh = _values([s.ttft for s in fresh_streams])
        gain = med(final) / med(fresh) if final and fresh else float("nan")
        if name == OURS and final and fresh:
            ours_gain = gain
        prompt = [s.prompt_tokens for s in final_streams if s.prompt_tokens is not None]
        cached = [s.cached_tokens for s in final_streams if s.cached_tokens is not None]
        tokens = f"{med(prompt):.0f} / {med(cached):.0f}" if prompt and cached else "- (not reported)"
        print(
            f"| {name} | {spread(first, ms)} | {spread(final, ms)} | {ratio(med(final), base_last)} | "
            f"{spread(fresh, ms)} | {gain:.2f} | {tokens} | {d1}, {d5}, {dr} |"
        )
    ok = None if ours_gain is None else ours_gain <= 0.3
    shown = "-" if ours_gain is None else f"{ours_gain:.2f}"
    how = "with interleaving" if args.conversations > 1 else "WITHOUT interleaving (one conversation)"
    print(f"\nTarget: OpenInteractions turn-{last} TTFT <= 0.3x a full re-prefill, {how}: {shown} -> {verdict(ok)}")


# ---- main -----------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and tokens: about 2-3 minutes")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp threads, every target")
    parser.add_argument("--max-tokens", type=int, help="tokens per stream in 1 and 2 (default 128, quick 96)")
    parser.add_argument("--reps", type=int, help="one-stream repetitions (default 7, quick 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrent-reps", type=int, help="repetitions of each concurrency (default 3, quick 1)")
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--turn-tokens", type=int, help="tokens per answer in 3 (default 48, quick 32)")
    parser.add_argument("--turn-reps", type=int, help="multi-turn repetitions (default 2, quick 1)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--no-seed", action="store_true", help="send no seed")
    parser.add_argument("--steady", type=float, default=1.3, help="largest max/min of decode tok/s called steady")
    parser.add_argument(
        "--noisy",
        type=float,
        default=0.10,
        help="share of all CPU time used by other processes above which a sample is left out (default 0.10)",
    )
    parser.add_argument(
        "--max-wait", type=float, help="seconds to wait for other processes to quiet down before a round (0: never)"
    )
    parser.add_argument("--wait-budget", type=float, help="total seconds of such waiting (default 120, quick 40)")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these parts (default: all)"
    )
    parser.add_argument("--model", help="GGUF for every target (default: the shipped SmolLM2-135M Q4_1)")
    parser.add_argument("--skip-llama-server", action="store_true", help="run without llama_cpp.server")
    parser.add_argument("--llama-server-arg", action="append", default=[], help="extra argument for it, repeatable")
    parser.add_argument("--raw", type=Path, help="write every sample as JSON to this file")
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "max_tokens": 96 if quick else 128,
        "reps": 3 if quick else 7,
        "concurrent_reps": 1 if quick else 3,
        "turn_tokens": 32 if quick else 48,
        "turn_reps": 1 if quick else 2,
        "max_wait": 5.0 if quick else 10.0,
        "wait_budget": 40.0 if quick else 120.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.conversations + 1 > 4 or max(args.concurrency) > 4:
        parser.error("at most 4 concurrent streams and 3 conversations (the servers' and ceiling's 4 sequences)")
    return args


def header(args: argparse.Namespace, gguf: str, ceiling: Ceiling, same_build: str) -> None:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print("## Embedded model: OpenInteractions vs the in-process ceiling vs llama_cpp.server\n")
    print(f"- model: `{Path(gguf).name}`; llama.cpp threads: {args.threads} for every target")
    print(f"- machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}")
    print(f"- llama.cpp: {ceiling.system_info}")
    print(f"- same llama.cpp libraries in both venvs: {same_build}")
    seed = "none" if args.no_seed else args.seed
    print(f"- sampling: temperature {args.temperature:g}, seed {seed}")
    print(f"- command: `python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`".replace("  ", " "))


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # also keeps asyncio.run from installing its own
        signal.signal(signal.SIGINT, _interrupted)
    llama_python = LLAMA_VENV / "bin" / "python"
    if not args.skip_llama_server and not llama_python.exists():
        print(llama_venv_missing_message(), file=sys.stderr)
        sys.exit(2)
    gguf = args.model or str(default_model_path())
    same_build = "not checked (llama_cpp.server skipped)"
    if not args.skip_llama_server:
        ours, theirs = _lib_digest(sys.executable), _lib_digest(str(llama_python))
        same_build = f"yes ({ours})" if ours == theirs else f"**NO** (project {ours}, bench venv {theirs})"
    seed = None if args.no_seed else args.seed
    sampling = Sampling(args.max_tokens, args.temperature, seed)
    turn_sampling = Sampling(args.turn_tokens, args.temperature, seed)

    with tempfile.TemporaryDirectory(prefix="bench-embedded-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        targets: list[Target] = []
        pids: list[int] = []
        proc = stack.enter_context(
            child(
                [sys.executable, str(BENCH / "embedded_direct.py"), "--model", gguf, "--threads", str(args.threads)],
                work / "ceiling.log",
                pipes=True,
            )
        )
        pids.append(proc.pid)
        ceiling = Ceiling(proc)
        targets.append(ceiling)

        config = work / "config.toml"
        config.write_text(
            f'[store]\ndata_dir = "{work / "data"}"\n[server]\nhost = "127.0.0.1"\nlog_level = "warning"\n'
            f'[models.{MODEL_NAME}]\nbackend = "llamacpp"\nthreads = {args.threads}\nparallel = 4\n'
            f"context_size = 4096\nbatch_size = 512\nmodel = {json.dumps(gguf)}\n"
        )
        port = free_port()
        log = work / "openinteractions.log"
        proc = stack.enter_context(
            child(
                [sys.executable, "-m", "openinteractions", "serve", "--config", str(config), "--port", str(port)], log
            )
        )
        pids.append(proc.pid)
        wait_for_port(port, proc, log)
        targets.append(Interactions(port))

        if not args.skip_llama_server:
            port = free_port()
            log = work / "llama_cpp.server.log"
            command = [
                str(llama_python),
                "-m",
                "llama_cpp.server",
                "--model",
                gguf,
                "--n_threads",
                str(args.threads),
                "--n_threads_batch",
                str(args.threads),
                "--n_ctx",
                "4096",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args.llama_server_arg,
            ]
            proc = stack.enter_context(child(command, log))
            pids.append(proc.pid)
            wait_for_port(port, proc, log)
            targets.append(LlamaServer(port))
        progress("all targets started")

        bench = Bench(targets, args, CpuMeter(pids))
        try:
            asyncio.run(measure(bench, sampling, turn_sampling))
        except ServerError as exc:
            logs = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in sorted(work.glob("*.log")))
            raise SystemExit(f"a request failed: {exc}\n{logs}") from exc
    header(args, gguf, ceiling, same_build)
    report([t.name for t in targets], args, bench.res)
    if args.raw:
        args.raw.write_text(json.dumps(raw(bench.res), indent=1))
        print(f"\nEvery sample: {args.raw}")


async def measure(bench: Bench, sampling: Sampling, turn_sampling: Sampling) -> None:
    await warm_up(bench, sampling)
    progress("warmed up")
    if "single" in bench.args.only:
        await run_single(bench, sampling)
    if "concurrent" in bench.args.only:
        await run_concurrent(bench, sampling)
    if "multiturn" in bench.args.only:
        await run_multiturn(bench, turn_sampling)


def raw(res: Results) -> dict[str, Any]:
    def one(s: Stream) -> dict[str, Any]:
        return {
            "ttft": s.ttft,
            "decode_tps": s.decode_tps,
            "tokens": s.tokens,
            "finish": s.finish,
            "prompt_tokens": s.prompt_tokens,
            "cached_tokens": s.cached_tokens,
            "foreign_cpu": s.foreign,
            "token_times": [t - s.sent for t in s.times],
        }

    return {
        "single": {k: [one(s) for s in v] for k, v in res.single.items()},
        "concurrent": {f"{k[0]} x{k[1]}": [[one(s) for s in r] for r in v] for k, v in res.concurrent.items()},
        "turns": {f"{k[0]} turn {k[1]}": [one(s) for s in v] for k, v in res.turns.items()},
        "reprefill": {k: [one(s) for s in v] for k, v in res.reprefill.items()},
    }


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; every process the benchmark started is stopped", file=sys.stderr)
        sys.exit(130)
