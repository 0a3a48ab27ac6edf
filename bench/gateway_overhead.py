"""Gateway overhead: a fast fake OpenAI-compatible upstream called (a) directly, (b) through OpenInteractions'
``openai`` backend and (c) through the LiteLLM proxy's ``/v1beta/interactions`` bridge, in the same run.

    python bench/gateway_overhead.py [--chunks 64] [--seconds 5] [--rounds 1] [--concurrency 1 10 100]
                                     [--litellm-venv bench/.venv-litellm | --no-litellm]

LiteLLM runs from its own virtual environment (``python3 -m venv bench/.venv-litellm &&
bench/.venv-litellm/bin/pip install 'litellm[proxy]'``), with a master key, ``use_chat_completions_api: true`` on
``openai/`` models, and every remote URL it knows pointed at a dead loopback port (see
/work/shared/research/baselines.md). Everything binds 127.0.0.1.

Prints two Markdown tables: throughput and latency per target and concurrency, with ratios against the upstream
measured in the same run (the median of the rounds), and the steps each gateway emits for a tool-calling and a
reasoning stream. Added latency is the gateway's percentile minus the upstream's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_load
import loadgen
from servers import ROOT, cpu_seconds, free_port, openinteractions, process

MASTER_KEY = "sk-bench-4f9c2a7e1b3d5f608a9c2e4b6d8f0a1c"
DEAD = "http://127.0.0.1:9/none"
LITELLM_ENV = {
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_MODEL_COST_MAP_URL": DEAD,
    "LITELLM_BLOG_POSTS_URL": DEAD,
    "LITELLM_ANTHROPIC_BETA_HEADERS_URL": DEAD,
    "LITELLM_AUTOROUTER_PRESETS_URL": DEAD,
    "NO_DOCS": "True",
    "DISABLE_ADMIN_UI": "True",
    "LITELLM_MASTER_KEY": MASTER_KEY,
    # Anything else that goes out through a proxy-aware client hits a dead loopback port.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}},
}
UPSTREAM = "upstream (direct)"


@dataclass
class Target:
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    marker: bytes = b"step.delta"  # the first content event
    kind: str = "interactions"
    pid: int = 0  # the serving process, whose CPU time per request is reported

    def body(self, model: str, mode: str = "text", store: bool | None = None) -> dict[str, Any]:
        if self.kind == "chat":
            suffix = "" if mode == "text" else f"-{mode}"
            messages = [{"role": "user", "content": "hi"}]
            return {
                "model": f"fake{suffix}",
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        body: dict[str, Any] = {"model": model if mode == "text" else f"{model}-{mode}", "input": "hi", "stream": True}
        if mode == "tool":
            body["tools"] = [WEATHER]
        if mode == "think":
            body["generation_config"] = {"thinking_level": "high", "thinking_summaries": "auto"}
        if store is not None:
            body["store"] = store
        return body


def oi_config(workdir: Path, upstream: int) -> Path:
    base = f"http://127.0.0.1:{upstream}/v1"
    path = workdir / "config.toml"
    store = [f'data_dir = "{workdir / "data"}"', "max_interactions_per_owner = 100000000"]  # not a quota test
    unlimited = ["create_rate_per_second = 0", "max_concurrent_runs = 0"]  # a load test through one key
    lines = ["[server]", 'log_level = "warning"', "[store]", *store, "[limits]", *unlimited]
    for name, model, extra in (
        ("bench", "fake", ""),
        ("bench-tool", "fake-tool", ""),
        ("bench-think", "fake-think", "supports_reasoning = true"),
    ):
        lines += [f"[models.{name}]", 'backend = "openai"', f'base_urls = ["{base}"]', f'model = "{model}"', extra]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def litellm(venv: Path, workdir: Path, upstream: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    base = f"http://127.0.0.1:{upstream}/v1"
    models = []
    for name, model in (("", "fake"), ("-tool", "fake-tool"), ("-think", "fake-think")):
        models.append(
            f"  - model_name: gemini-3-flash-preview{name}\n    litellm_params: {{model: openai/{model}, "
            f'api_base: "{base}", api_key: "x", use_chat_completions_api: true}}'
        )
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n" + "\n".join(models) + "\nlitellm_settings:\n  telemetry: false\n  drop_params: true\n"
    )
    log = workdir / "litellm.log"
    command = f"exec {venv / 'bin' / 'litellm'} --config {config} --host 127.0.0.1 --port {port} --num_workers 1"
    with process(["bash", "-c", f"{command} >>{log} 2>&1"], port, env={**os.environ, **LITELLM_ENV}) as proc:
        yield proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--litellm-venv", type=Path, default=ROOT / "bench" / ".venv-litellm")
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    use_litellm = not args.no_litellm
    if use_litellm and not (args.litellm_venv / "bin" / "litellm").exists():
        sys.exit(f"no LiteLLM in {args.litellm_venv}: install it there (see --help) or pass --no-litellm")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        up, ours, lite = free_port(), free_port(), free_port()
        upstream_args = [sys.executable, str(ROOT / "bench" / "gateway_upstream.py"), str(up), str(args.chunks)]
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(process(upstream_args, up)).pid
            gateway = stack.enter_context(openinteractions(oi_config(workdir, up), ours)).pid
            chat = Target(up, "/v1/chat/completions", marker=b'"content":"', kind="chat", pid=upstream)
            targets = {
                UPSTREAM: (chat, "fake", None),
                "OpenInteractions (store: false)": (Target(ours, "/v1beta/interactions", pid=gateway), "bench", False),
                "OpenInteractions (store: true)": (Target(ours, "/v1beta/interactions", pid=gateway), "bench", True),
            }
            if use_litellm:
                bridge = stack.enter_context(litellm(args.litellm_venv, workdir, up, lite)).pid
                auth = {"authorization": f"Bearer {MASTER_KEY}"}
                targets["LiteLLM /v1beta/interactions"] = (
                    Target(lite, "/v1beta/interactions", auth, pid=bridge),
                    "gemini-3-flash-preview",
                    None,
                )
            steps = asyncio.run(step_report(targets))
            results = asyncio.run(measure(targets, args))
    report(results, steps, args)


async def step_report(targets: dict[str, tuple[Target, str, bool | None]]) -> dict[str, dict[str, Any]]:
    """What each target emits for a tool-calling and a reasoning stream: a summary of its steps and deltas, and
    whether it carries everything the upstream sent (the same arguments, reasoning and text, a signature)."""
    out: dict[str, dict[str, Any]] = {}
    bodies: dict[str, dict[str, str]] = {}
    async with httpx.AsyncClient(timeout=60) as http:
        for name, (target, model, store) in targets.items():
            if "store: true" in name:
                continue
            out[name], bodies[name] = {}, {}
            for mode in ("tool", "think"):
                url = f"http://127.0.0.1:{target.port}{target.path}"
                response = await http.post(url, json=target.body(model, mode, store), headers=target.headers)
                out[name][mode] = summarize(response.text, target.kind)
                bodies[name][mode] = response.text
    sent = {mode: content(bodies[UPSTREAM][mode], "chat") for mode in ("tool", "think")}
    for name, (target, _model, _store) in targets.items():
        if name in bodies and name != UPSTREAM:
            tool = content(bodies[name]["tool"], target.kind)
            think = content(bodies[name]["think"], target.kind)
            out[name]["kept"] = (
                "requires_action" in out[name]["tool"]
                and tool["arguments"] == sent["tool"]["arguments"] != ""
                and think["reasoning"] == sent["think"]["reasoning"] != ""
                and think["text"] == sent["think"]["text"] != ""
                and think["signature"] != ""
            )
    return out


def summarize(body: str, kind: str) -> str:
    payloads = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    if kind == "chat":
        counts: dict[str, int] = {}
        for chunk in payloads:
            for choice in chunk.get("choices") or []:
                for key, value in (choice.get("delta") or {}).items():
                    if value and key != "role":
                        counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{key} x{n}" for key, n in counts.items())
    steps: list[list[Any]] = []
    status = "?"
    for event in payloads:
        kind_ = event.get("event_type")
        if kind_ == "step.start":
            steps.append([event["step"]["type"], {}])
        elif kind_ == "step.delta" and steps:
            delta_type = event["delta"]["type"]
            steps[-1][1][delta_type] = steps[-1][1].get(delta_type, 0) + 1
        elif kind_ in ("interaction.completed", "error"):
            status = (event.get("interaction") or {}).get("status") or event.get("status") or kind_
    parts = [f"{t} ({', '.join(f'{d} x{n}' for d, n in deltas.items()) or 'no deltas'})" for t, deltas in steps]
    return (" → ".join(parts) or "no steps") + f"; status {status}"


def content(body: str, kind: str) -> dict[str, str]:
    """What a stream carries, whatever the number of deltas it is cut into: arguments, reasoning, text."""
    payloads = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    out = {"arguments": "", "reasoning": "", "text": "", "signature": ""}
    for event in payloads:
        if kind == "chat":
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or []:
                    out["arguments"] += (call.get("function") or {}).get("arguments") or ""
                out["reasoning"] += delta.get("reasoning_content") or ""
                out["text"] += delta.get("content") or ""
        elif event.get("event_type") == "step.delta":
            delta = event["delta"]
            if delta["type"] == "arguments_delta":
                out["arguments"] += delta.get("arguments") or ""
            elif delta["type"] == "thought_summary":
                out["reasoning"] += (delta.get("content") or {}).get("text") or ""
            elif delta["type"] == "thought_signature":
                out["signature"] += delta.get("signature") or ""
            elif delta["type"] == "text":
                out["text"] += delta.get("text") or ""
    return out


async def measure(targets: dict[str, tuple[Target, str, bool | None]], args: argparse.Namespace) -> dict[Any, Any]:
    results: dict[tuple[str, int], list[loadgen.Result]] = {}
    requests = {
        name: loadgen.build_request("127.0.0.1", t.port, t.path, t.body(model, "text", store), t.headers)
        for name, (t, model, store) in targets.items()
    }
    for name, (target, _, _) in targets.items():  # warm-up
        await gateway_load.run("127.0.0.1", target.port, requests[name], target.marker, 4, 1.0)
    for _ in range(args.rounds):
        for concurrency in args.concurrency:
            for name, (target, _, _) in targets.items():
                before = cpu_seconds(target.pid)
                result = await gateway_load.run(
                    "127.0.0.1", target.port, requests[name], target.marker, concurrency, args.seconds
                )
                if result.errors or not result.samples:
                    raise RuntimeError(f"{name} at {concurrency}: {result.errors} failed requests")
                result.cpu_ms = 1000 * (cpu_seconds(target.pid) - before) / len(result.samples)
                results.setdefault((name, concurrency), []).append(result)
    return results


def _median(runs: list[loadgen.Result], metric: str) -> float:
    if metric == "rps":
        return statistics.median(r.requests_per_s for r in runs)
    if metric == "cpu":
        return statistics.median(r.cpu_ms for r in runs)
    attr, q = metric.split(":")
    return statistics.median(r.pct(attr, float(q)) if q != "0.5" else r.p50(attr) for r in runs)


def report(results: dict[Any, Any], steps: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.chunks}-chunk text streams; median of {args.rounds} round(s) of {args.seconds:g} s per target and "
        "concurrency; TTFE = time to the first SSE event, first delta = time to the first content event; "
        "added = target minus upstream at the same percentile; CPU = user + system time of the serving process "
        "(and its children) per request, measured by /proc around each load run\n"
    )
    print(
        "| target | streams | req/s | x upstream | CPU ms/req | TTFE p50 / p99 ms | added TTFE p50 / p99 ms "
        "| first delta p50 ms | added first delta p50 ms | total p50 / p99 ms | added total p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    checks: list[str] = []
    for concurrency in args.concurrency:
        base = {m: _median(results[(UPSTREAM, concurrency)], m) for m in _METRICS}
        for (name, c), runs in results.items():
            if c != concurrency:
                continue
            v = {m: _median(runs, m) for m in _METRICS}
            ratio = v["rps"] / base["rps"]
            row = [name, str(c), f"{v['rps']:,.0f}", f"{ratio:.2f}", f"{v['cpu']:.2f}"]
            row.append(f"{v['ttfe:0.5']:.2f} / {v['ttfe:0.99']:.2f}")
            row.append("—" if name == UPSTREAM else _added(v, base, "ttfe"))
            row.append(f"{v['ttfc:0.5']:.2f}")
            row.append("—" if name == UPSTREAM else f"{v['ttfc:0.5'] - base['ttfc:0.5']:+.2f}")
            row.append(f"{v['total:0.5']:.2f} / {v['total:0.99']:.2f}")
            row.append("—" if name == UPSTREAM else _added(v, base, "total"))
            print("| " + " | ".join(row) + " |")
            if name.startswith("OpenInteractions"):
                checks.append(f"{name} at {c}: throughput {ratio:.2f}x upstream (target ≥ 0.5): {_ok(ratio >= 0.5)}")
                if c == 1:
                    added = v["ttfe:0.5"] - base["ttfe:0.5"]
                    checks.append(f"{name} at 1: added p50 TTFE {added:+.2f} ms (target < 2): {_ok(added < 2)}")
    print("\n| target | tool-calling stream | reasoning stream |\n|---|---|---|")
    for name, modes in steps.items():
        print(f"| {name} | {modes['tool']} | {modes['think']} |")
    for name, modes in steps.items():
        if name.startswith("OpenInteractions"):
            kept = bool(modes.get("kept"))
            checks.append(f"{name}: every step kept (tool call, thoughts, text, all of their content): {_ok(kept)}")
    print("\n" + "\n".join(f"- {line}" for line in checks))


_METRICS = ("rps", "cpu", "ttfe:0.5", "ttfe:0.99", "ttfc:0.5", "total:0.5", "total:0.99")


def _added(v: dict[str, float], base: dict[str, float], attr: str) -> str:
    return f"{v[f'{attr}:0.5'] - base[f'{attr}:0.5']:+.2f} / {v[f'{attr}:0.99'] - base[f'{attr}:0.99']:+.2f}"


def _ok(passed: bool) -> str:
    return "met" if passed else "NOT met"


if __name__ == "__main__":
    main()
