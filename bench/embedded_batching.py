"""How much llama.cpp itself gains from decoding several sequences in one batch, per weight format.

    python bench/embedded_batching.py [--model PATH] [--requantize q4_0 q4_k_m q8_0 ...] [--threads 2]
                                      [--steps 64] [--rounds 3] [--text FILE]

The floor under bench/embedded.py's "4-stream aggregate" figure: no HTTP, no asyncio, no sampling, no Python
per token beyond filling the batch. For each GGUF it times ``llama_decode`` over ``--steps`` steps holding one
token for each of 1, 2 and 4 sequences (after a 55-token prompt each, like the stories of bench/embedded.py),
and one 512-token prompt (prefill). Models are measured round-robin, ``--rounds`` times, and the median is
reported, so that a noisy moment hits every model alike.

``--requantize`` converts the model to other llama.cpp weight types first (as the ``convert_weights`` option
of the llamacpp backend does, into a temporary directory): some types have batched kernels on this CPU (Q4_0
and Q4_K are repacked for AVX2 matrix-matrix products) and gain more from batching. Converting an already
4-bit model loses accuracy, so the table also gives each conversion's distance from the original on ``--text``
(default: docs/architecture.md, its first 1024 tokens): the mean KL divergence of the next-token distributions,
how often the most likely next token is the same, and the perplexity on the text.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_cpp as L
import numpy as np

from openinteractions.backends.llamacpp.models import FILE_TYPES, converted, default_model_path

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 2, 4)
PROMPT = 55


@L.llama_log_callback
def _quiet(_level: int, _text: bytes, _data: Any) -> None:
    pass


class Model:
    def __init__(self, path: str, threads: int) -> None:
        self.path = path
        self.model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
        if not self.model:
            sys.exit(f"llama.cpp could not load {path}")
        params = L.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 4 * 2048, 1024, 512, 4
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the server's engine runs it
        self.ctx = L.llama_init_from_model(self.model, params)
        self.memory = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(1024, 0, 1)
        self.vocab = L.llama_model_get_vocab(self.model)

    def _decode(self, tokens: list[tuple[int, int, int, bool]]) -> None:
        for n, (token, pos, seq, logits) in enumerate(tokens):
            self.batch.token[n], self.batch.pos[n], self.batch.seq_id[n][0] = token, pos, seq
            self.batch.n_seq_id[n], self.batch.logits[n] = 1, logits
        self.batch.n_tokens = len(tokens)
        if L.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")

    def _clear(self) -> None:
        for seq in range(4):
            L.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def decode_rate(self, sequences: int, steps: int) -> float:
        """Tokens per second over ``steps`` decode steps of one token per sequence."""
        self._clear()
        self._decode([(100 + i, i, s, i == PROMPT - 1) for s in range(sequences) for i in range(PROMPT)])
        started = time.perf_counter()
        for k in range(steps):
            self._decode([(200 + k, PROMPT + k, s, True) for s in range(sequences)])
        return sequences * steps / (time.perf_counter() - started)

    def prefill_rate(self) -> float:
        self._clear()
        started = time.perf_counter()
        self._decode([(100 + i % 1000, i, 0, i == 511) for i in range(512)])
        return 512 / (time.perf_counter() - started)

    def text_log_probs(self, text: str) -> tuple[np.ndarray, list[int]]:
        data = text.encode()
        buffer = (L.llama_token * (len(data) + 8))()
        n = min(L.llama_tokenize(self.vocab, data, len(data), buffer, len(data) + 8, True, False), 1024)
        tokens = list(buffer[:n])
        self._clear()
        self._decode([(token, i, 0, True) for i, token in enumerate(tokens)])
        logits = np.ctypeslib.as_array(L.llama_get_logits(self.ctx), shape=(n, L.llama_vocab_n_tokens(self.vocab)))
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), tokens


def quality(reference: tuple[np.ndarray, list[int]], candidate: np.ndarray) -> tuple[float, float, float]:
    """(mean KL(reference || candidate), share of positions with the same top token, candidate's perplexity)."""
    ref, tokens = reference
    kl = float((np.exp(ref) * (ref - candidate)).sum(axis=1).mean())
    same_top = float((ref.argmax(axis=1) == candidate.argmax(axis=1)).mean())
    nll = -float(np.mean([candidate[i, tokens[i + 1]] for i in range(len(tokens) - 1)]))
    return kl, same_top, float(np.exp(nll))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF to measure (default: the shipped SmolLM2-135M Q4_1)")
    parser.add_argument("--requantize", nargs="*", default=[], choices=sorted(FILE_TYPES), help="also these types")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--text", type=Path, default=ROOT / "docs" / "architecture.md")
    args = parser.parse_args()
    L.llama_backend_init()
    L.llama_log_set(_quiet, ctypes.c_void_p(0))
    source = args.model or str(default_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        paths = [source] + [str(converted(Path(source), kind, Path(tmp))) for kind in args.requantize]
        models = [Model(path, args.threads) for path in paths]
        text = args.text.read_text()
        reference = models[0].text_log_probs(text)
        scores = [quality(reference, m.text_log_probs(text)[0]) for m in models]
        rates: dict[tuple[int, int], list[float]] = {}
        for m in models:  # warm-up
            m.decode_rate(4, 8)
        for _ in range(args.rounds):
            for i, m in enumerate(models):
                for b in BATCHES:
                    rates.setdefault((i, b), []).append(m.decode_rate(b, args.steps))
                rates.setdefault((i, 0), []).append(m.prefill_rate())
        sizes = [Path(p).stat().st_size / 1e6 for p in paths]
    print(f"`python bench/embedded_batching.py {' '.join(sys.argv[1:])}`".replace(" `", "`"))
    print(f"\n{args.steps} decode steps after a {PROMPT}-token prompt per sequence; median of {args.rounds} "
          f"rounds; {args.threads} threads; quality on {args.text.name} vs {Path(source).name}\n")  # fmt: skip
    print("| weights | MB | 1 seq tok/s | 2 seq tok/s | 4 seq tok/s | 4 seq x 1 seq | prefill tok/s "
          "| KL vs original | same top token | perplexity |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, path in enumerate(paths):
        med = {b: statistics.median(rates[(i, b)]) for b in (0, *BATCHES)}
        kl, same, ppl = scores[i]
        name = Path(path).name if i == 0 else f"{args.requantize[i - 1]} (converted)"
        print(f"| {name} | {sizes[i]:.0f} | {med[1]:.0f} | {med[2]:.0f} | {med[4]:.0f} | {med[4] / med[1]:.2f} "
              f"| {med[0]:.0f} | {kl:.4f} | {same:.3f} | {ppl:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
