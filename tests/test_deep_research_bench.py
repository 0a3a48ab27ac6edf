"""bench/deep_research.py's corpus is sound (each question's gold documents hold its facts, and only they do) and
its scoring means what its docstring says."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # as `python bench/deep_research.py` runs it (it imports bench/servers.py)
    return importlib.import_module("deep_research")


def test_the_corpus_plants_each_answer_in_its_gold_documents_only(bench: ModuleType) -> None:
    corpus = bench.make_corpus()
    assert len(corpus.documents) >= 200 and len(corpus.questions) >= 30
    assert {q.hops for q in corpus.questions} == {1, 2}
    for question in corpus.questions:
        company = re.match(r"(?:Who founded|In which city was the founder of) (.+?)(?: born)?\?$", question.text)
        assert company is not None
        name = company.group(1)
        founded = [f for f, text in corpus.documents.items() if f"{name} was founded by " in text]
        assert founded == [question.gold[0]]
        founder = re.search(rf"{re.escape(name)} was founded by (.+?) in \d{{4}}\.", corpus.documents[founded[0]])
        assert founder is not None
        if question.hops == 1:
            assert founder.group(1) == question.answer
            continue
        born = [f for f, text in corpus.documents.items() if f"{founder.group(1)} was born in " in text]
        assert born == [question.gold[1]]
        assert f"{founder.group(1)} was born in {question.answer} in " in corpus.documents[born[0]]
        assert question.answer not in corpus.documents[founded[0]]  # the second hop is needed
    look_alikes = [q for q in corpus.questions if sum(q.text.split()[-2 if q.hops == 1 else -3] in t.splitlines()[0]
                                                      for t in corpus.documents.values()) >= 3]  # fmt: skip
    assert len(look_alikes) == len(corpus.questions)  # each company has two namesakes


def test_the_corpus_is_the_same_for_a_seed(bench: ModuleType) -> None:
    assert bench.make_corpus(7) == bench.make_corpus(7) != bench.make_corpus(8)


def test_scoring(bench: ModuleType) -> None:
    report = "# Velmor Dynamics\n\nThe founder was born in Tarvik [1].\n\n## Details\n\nMore."
    assert bench.summary(report) == "The founder was born in Tarvik [1]."
    assert bench.exact_match(report, "tarvik") and not bench.exact_match(report, "Tar")
    assert bench.f1("born in Tarvik", "Tarvik") == pytest.approx(0.5)
    question = bench.Question(0, "q", "Tarvik", ["company-velmor.md", "person-ansel.md"], 2)
    steps = [
        {"type": "thought", "summary": [{"type": "text", "text": "Writing the report from 3 notes on 2 sources."}]},
        {"type": "url_context_result", "result": [{"url": "file:///c/company-velmor.md", "status": "success"}]},
        {"type": "model_output", "content": [{"type": "text", "text": report, "annotations": [
            {"type": "url_citation", "url": "file:///c/company-velmor.md"},
            {"type": "url_citation", "url": "file:///c/city-tarvik.md"}]}]},
    ]  # fmt: skip
    outcome = bench.score(question, {"status": "completed", "steps": steps, "usage": {"total_tokens": 9}}, 1.5)
    assert (outcome.em, outcome.precision, outcome.recall) == (True, 0.5, 0.5)
    assert (outcome.notes, outcome.citations, outcome.resolved, outcome.steps, outcome.tokens) == (3, 2, 1, 3, 9)
