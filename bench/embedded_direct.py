"""The ceiling for bench/embedded.py: llama.cpp driven directly through llama-cpp-python's low-level API.

Run by bench/embedded.py as a child process (so that it never shares a GIL with the load generator):

    python bench/embedded_direct.py --model PATH --threads K [--parallel 4] [--context-size 4096] [--batch 512]

It loads the GGUF once, with the context the server's engine uses (``parallel`` sequences of ``context_size``
tokens each, non-unified KV cache, one batch size for logical and physical batches), prints one JSON line
``{"ready": true, ...}`` and then answers commands, one JSON object per line on stdin, one JSON line each on
stdout:

- ``{"op": "generate", "jobs": [{"seq": 0, "messages": [...], "reuse": false}, ...], "max_tokens": N,
  "temperature": T, "seed": S}`` starts every job at the same instant and decodes them together: each step is
  one ``llama_decode`` holding one token for every sequence that is generating plus a share of the prompt
  tokens of those still prefilling (the 512-token batch shared out), then one sample per sequence that has
  logits. ``messages`` are rendered with the GGUF's own chat template; ``reuse`` keeps the longest prefix the
  sequence already holds in the KV cache (a conversation's next turn), otherwise the sequence is cleared (a
  full prefill). The answer is ``{"jobs": [{"ttft": s, "times": [s, ...], "tokens": n, "text": str,
  "prompt_tokens": n, "cached_tokens": n, "finish": "stop"|"max_tokens"}]}`` with times in seconds since the
  command started (tokenisation and prompt rendering included).
- ``{"op": "quit"}`` ends the process (so does the end of stdin).

This is what an ideal server would do with no HTTP, no asyncio and no threads: the floor of the cost of the
same work, measured in-process.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L
from llama_cpp.llama_chat_format import Jinja2ChatFormatter


@dataclass
class _Seq:
    seq: int
    tokens: list[int] = field(default_factory=list)  # exactly what this sequence holds in the KV cache


@dataclass
class _Job:
    seq: _Seq
    prompt: list[int]
    pending: list[int]
    cached: int
    sampler: Any
    generated: list[int] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    logit_index: int = -1
    finish: str | None = None


class Direct:
    def __init__(
        self, model_path: str, threads: int, parallel: int, context_size: int, batch: int, kv_unified: bool = False
    ) -> None:
        @L.llama_log_callback
        def quiet(_level: int, _text: bytes, _data: Any) -> None:
            return None

        self._quiet = quiet  # keep the callback alive
        L.llama_log_set(quiet, ctypes.c_void_p(0))
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {model_path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        cparams = L.llama_context_default_params()
        cparams.n_ctx = context_size * parallel
        cparams.n_batch = batch
        cparams.n_ubatch = batch
        cparams.n_seq_max = parallel
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = kv_unified
        cparams.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the server's engine runs it
        self.ctx = L.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise SystemExit("llama.cpp could not create a context")
        self.memory = L.llama_get_memory(self.ctx)
        self.batch_size = batch
        self.batch = L.llama_batch_init(batch, 0, 1)
        self.seqs = [_Seq(i) for i in range(parallel)]
        template = self.metadata("tokenizer.chat_template")
        if template is None:
            raise SystemExit("the GGUF has no chat template")
        bos = self.piece(L.llama_vocab_bos(self.vocab), special=True).decode(errors="replace")
        eos = self.piece(L.llama_vocab_eos(self.vocab), special=True).decode(errors="replace")
        self.formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=True)

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = L.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return None if n < 0 else buf.value.decode(errors="replace")

    def piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        capacity = len(data) + 8
        out = (L.llama_token * capacity)()
        n = L.llama_tokenize(self.vocab, data, len(data), out, capacity, False, True)
        if n < 0:
            capacity = -n
            out = (L.llama_token * capacity)()
            n = L.llama_tokenize(self.vocab, data, len(data), out, capacity, False, True)
        return list(out[:n])

    def sampler(self, temperature: float, seed: int) -> Any:
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if temperature <= 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
            return chain
        # the same chain as the server's engine (its defaults: top_k 64, top_p 0.95)
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(64))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(0.95, 1))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(temperature))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _add(self, n: int, token: int, pos: int, seq: int, logits: bool) -> int:
        b = self.batch
        b.token[n] = token
        b.pos[n] = pos
        b.seq_id[n][0] = seq
        b.n_seq_id[n] = 1
        b.logits[n] = logits
        return n + 1

    def generate(self, command: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        max_tokens = int(command["max_tokens"])
        temperature = float(command.get("temperature", 0.0))
        seed = int(command.get("seed", 0))
        jobs: list[_Job] = []
        for i, spec in enumerate(command["jobs"]):
            seq = self.seqs[int(spec["seq"])]
            text = str(self.formatter(messages=spec["messages"]).prompt)
            prompt = self.tokenize(text)
            keep = 0
            if spec.get("reuse"):
                keep = _common_prefix(seq.tokens, prompt)
                keep = min(keep, len(prompt) - 1)  # at least one token to evaluate, for the logits
            L.llama_memory_seq_rm(self.memory, seq.seq, keep, -1)
            seq.tokens = seq.tokens[:keep]
            jobs.append(_Job(seq, prompt, prompt[keep:], keep, self.sampler(temperature, seed + i)))
        active = list(jobs)
        while active:
            n = 0
            decoding = [j for j in active if not j.pending]
            prefilling = [j for j in active if j.pending]
            for job in decoding:
                token = job.generated[-1]
                n = self._add(n, token, len(job.seq.tokens), job.seq.seq, True)
                job.seq.tokens.append(token)
                job.logit_index = n - 1
            budget = self.batch_size - n
            for i, job in enumerate(prefilling):
                share = max(1, budget // (len(prefilling) - i))
                chunk, job.pending = job.pending[:share], job.pending[share:]
                for k, token in enumerate(chunk):
                    last = not job.pending and k == len(chunk) - 1
                    n = self._add(n, token, len(job.seq.tokens), job.seq.seq, last)
                    job.seq.tokens.append(token)
                job.logit_index = n - 1 if not job.pending else -1
                budget -= len(chunk)
            self.batch.n_tokens = n
            status = L.llama_decode(self.ctx, self.batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            for job in list(active):
                if job.pending or job.logit_index < 0:
                    continue
                token = L.llama_sampler_sample(job.sampler, self.ctx, job.logit_index)
                job.logit_index = -1
                if L.llama_vocab_is_eog(self.vocab, token):
                    job.finish = "stop"
                else:
                    job.generated.append(token)
                    job.pieces.append(self.piece(token))
                    job.times.append(time.perf_counter() - t0)
                    if len(job.generated) >= max_tokens:
                        job.finish = "max_tokens"
                if job.finish is not None:
                    active.remove(job)
        out = []
        for job in jobs:
            L.llama_sampler_free(job.sampler)
            out.append(
                {
                    "ttft": job.times[0] if job.times else None,
                    "times": job.times,
                    "tokens": len(job.generated),
                    "text": b"".join(job.pieces).decode(errors="replace"),
                    "prompt_tokens": len(job.prompt),
                    "cached_tokens": job.cached,
                    "finish": job.finish,
                }
            )
        return {"jobs": out}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--context-size", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--kv-unified", action="store_true", help="one KV buffer for all sequences (the engine: no)")
    args = parser.parse_args()
    started = time.perf_counter()
    direct = Direct(args.model, args.threads, args.parallel, args.context_size, args.batch, args.kv_unified)
    ready = {
        "ready": True,
        "load_s": time.perf_counter() - started,
        "system_info": L.llama_print_system_info().decode(),
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        try:
            if command.get("op") != "generate":
                raise ValueError(f"unknown op {command.get('op')!r}")
            reply = direct.generate(command)
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
