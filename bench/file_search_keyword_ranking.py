"""Keyword ranking of file_search on its two catalogs, compared: SQLite FTS5's BM25, the BM25 the PostgreSQL catalog
computes in SQL over its full-text search, and PostgreSQL's own ``ts_rank_cd`` / ``ts_rank`` over the same
match. Recall@5 and the time of one ranking query, on two corpora:

- ``synonyms``: the generated corpus of tests/test_file_search.py (a query names its passage's subject and place
  by synonyms, its event as it is: words alone tie among the passages of one event);
- ``docs``: the paragraphs of docs/*.md; each query is three words of its paragraph (four letters or more) and
  two words drawn from the whole text by their frequency (the common words a real question carries). Finding the
  paragraph needs the rare words to weigh more than the common ones: what IDF is for.

    scripts/isolated .venv/bin/python bench/file_search_keyword_ranking.py [--filler 5000]

It makes a scratch PostgreSQL database (tests/pg.py: the unix socket) and drops it afterwards. ``--filler N``
adds N documents to the docs store, each the words of a paragraph shuffled with those of another, to time (and
blur) a larger store.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sqlalchemy import text

import pg
from openinteractions.filestores.chunking import Chunk
from openinteractions.filestores.pg_catalog import PostgresCatalog, query_words
from openinteractions.filestores.sqlite_catalog import SqliteCatalog
from test_file_search import corpus

ROOT = Path(__file__).resolve().parents[1]
Rank = Callable[[str, str], list[int]]  # (store, query) -> chunk ids, best first

_PG_RANK = """SELECT c.id FROM file_search_chunks c
               WHERE c.store = :store AND c.terms @@ to_tsquery('english', :expression)
               ORDER BY {function}(c.terms, to_tsquery('english', :expression)) DESC, c.id LIMIT 20"""


def docs_corpus(seed: int = 3) -> list[tuple[str, str]]:
    paragraphs = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for block in re.split(r"\n\s*\n", path.read_text()):
            words = re.findall(r"[A-Za-z]{4,}", block)
            if len(words) >= 12 and not block.lstrip().startswith("|"):
                paragraphs.append(" ".join(block.split()))
    frequency = Counter(w.lower() for p in paragraphs for w in re.findall(r"[A-Za-z]{4,}", p))
    common, weights = zip(*frequency.most_common(300), strict=True)
    rng = random.Random(seed)
    pairs = []
    for paragraph in paragraphs:
        own = sorted({w.lower() for w in re.findall(r"[A-Za-z]{4,}", paragraph)})
        query = rng.sample(own, 3) + rng.choices(common, weights=weights, k=2)
        rng.shuffle(query)
        pairs.append((paragraph, " ".join(query)))
    return pairs


def fillers(passages: list[str], count: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        words = " ".join(rng.sample(passages, 2)).split()
        rng.shuffle(words)
        made.append(" ".join(words[: len(words) // 2]))
    return made


def fill(catalog: SqliteCatalog | PostgresCatalog, store: str, passages: list[str], filler: list[str]) -> list[str]:
    """The passages' documents' names (the fillers' documents come after them)."""
    catalog.add_store(store, "bench", store, "bm25", "now")
    names = []
    for i, passage in enumerate(passages + filler):
        name = f"{store}/documents/{i}"
        catalog.add_document(name, store, name, "text/plain", len(passage), [], "now")
        catalog.activate(name, [Chunk(passage)], None, "now")
        names.append(name)
    return names[: len(passages)]


def measure(rank: Rank, catalog: SqliteCatalog | PostgresCatalog, store: str, pairs: list[tuple[str, str]],
            names: list[str]) -> tuple[float, float]:  # fmt: skip
    hits, elapsed = 0, 0.0
    for i, (_, query) in enumerate(pairs):
        started = time.perf_counter()
        ids = rank(store, query)[:5]
        elapsed += time.perf_counter() - started
        hits += names[i] in {found.document for found in catalog.found(ids)}
    return hits / len(pairs), 1000 * elapsed / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filler", type=int, default=0)
    args = parser.parse_args()
    corpora = {"synonyms": corpus(60), "docs": docs_corpus()}
    with pg.scratch_database() as database, tempfile.TemporaryDirectory() as folder:
        sqlite = SqliteCatalog(Path(folder) / "file_search.db")
        postgres = PostgresCatalog(pg.url(database))

        def pg_function(function: str) -> Rank:
            def rank(store: str, query: str) -> list[int]:
                expression = " | ".join(query_words(query))
                with postgres.begin() as conn:
                    rows = conn.execute(
                        text(_PG_RANK.format(function=function)), {"store": store, "expression": expression}
                    )
                    return [row[0] for row in rows]  # fmt: skip

            return rank

        rankers: dict[str, tuple[SqliteCatalog | PostgresCatalog, Rank]] = {
            "SQLite FTS5 bm25": (sqlite, lambda store, query: sqlite.bm25([store], None, query, 20)),
            "PostgreSQL BM25 (the catalog's)": (postgres, lambda store, query: postgres.bm25([store], None, query, 20)),
            "PostgreSQL ts_rank_cd": (postgres, pg_function("ts_rank_cd")),
            "PostgreSQL ts_rank": (postgres, pg_function("ts_rank")),
        }
        print("| ranking | " + " | ".join(f"{n} ({len(p)} passages) recall@5 | query" for n, p in corpora.items()))
        print("|---|" + "---|---|" * len(corpora))
        names = {}
        for corpus_name, pairs in corpora.items():
            passages = [p for p, _ in pairs]
            filler = fillers(passages, args.filler) if corpus_name == "docs" else []
            for catalog in (sqlite, postgres):
                names[corpus_name, id(catalog)] = fill(catalog, corpus_name, passages, filler)
        for ranking, (catalog, rank) in rankers.items():
            cells = []
            for corpus_name, pairs in corpora.items():
                recall, ms = measure(rank, catalog, corpus_name, pairs, names[corpus_name, id(catalog)])
                cells.append(f"{recall:.2f} | {ms:.1f} ms")
            print(f"| {ranking} | " + " | ".join(cells) + " |")
        sqlite.close()
        postgres.close()


if __name__ == "__main__":
    main()
