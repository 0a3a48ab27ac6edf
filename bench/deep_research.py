"""Offline evaluation of the deep-research agent: a generated corpus with planted multi-hop facts, questions with
gold answers and gold supporting documents, served through the local search index.

    python bench/deep_research.py [--questions N] [--seed 16] [--concurrency 1]
    python bench/deep_research.py --openai-base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B

The corpus (seeded, so every run sees the same one): per question a company ("Velmor Dynamics was founded by
Ansel Quorin in 1987"), its founder ("Ansel Quorin was born in Tarvik"), two companies that share the name's
first word (other founders, born elsewhere), a person who shares the founder's surname, and a page per city;
about 250 Markdown documents. Two questions in three ask two hops ("In which city was the founder of Velmor
Dynamics born?": gold, the company's and the founder's pages), the third one hop ("Who founded Velmor
Dynamics?": the company's page). The names are made up, so only the corpus can answer.

The server (a subprocess on a loopback port, its store and index in a temporary folder) thinks with the
embedded model by default, decoding greedily, or with ``--model NAME`` of the OpenAI-compatible engine at
``--openai-base-url`` (its key from the variable ``--api-key-env`` names, if any). Each question is one
background agent interaction (``POST /v1beta/interactions``, then polled), with the agent's budgets given here.
The corpus is the same for a seed; the runs need not be: with ``--concurrency`` above 1 the embedded model
decodes the questions together in batches whose make-up varies, and a question's outcome changed between two
runs (greedy decoding notwithstanding).

What is measured, per question and in total (the agent is not asked for an answer line; the report is scored
as it is written):

- **EM**: the gold answer (case, punctuation and articles aside) appears in the report;
- **F1**: token F1 of the report's summary (its first paragraph that is not a heading) against the gold answer;
- **citation precision / recall**: of the documents the report's ``url_citation`` annotations name, the share
  that are gold documents (over the questions with a citation) / of the gold documents, the share cited;
- **notes**: the notes the agent kept (a quote found in a document it read), as its report thought says;
- **resolved**: the share of citations whose URL is among the run's ``url_context`` results read successfully
  (the agent guarantees 1.00; this checks it);
- steps, total tokens (``usage.total_tokens``) and wall time from create to the terminal status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from servers import free_port, openinteractions

EMBEDDED = "smollm2-135m-instruct"
AGENT = "bench-researcher"
_SYLLABLES = ["vel", "mor", "tar", "vik", "an", "sel", "quo", "rin", "bel", "dra",
              "kos", "len", "mi", "ra", "tho", "lun", "gar", "esh", "ol", "van",
              "du", "ser", "pa", "lio", "nek", "zan", "cor", "fi", "bru", "ta"]  # fmt: skip
_KINDS = ["Dynamics", "Systems", "Labs", "Robotics", "Foods", "Textiles", "Optics", "Logistics"]
_INDUSTRIES = ["robotics", "food", "textile", "optics", "logistics", "software", "battery", "shipping"]
_RIVERS = ["Amber", "Silt", "Heron", "Cold", "Willow", "Stone"]
AGENT_CONFIG = {"type": "deep-research", "thinking_summaries": "auto"}  # the summaries say how many notes were kept
_TERMINAL = {"completed", "failed", "cancelled", "budget_exceeded", "requires_action", "incomplete"}


# ---- the corpus -------------------------------------------------------------------------------------------


@dataclass
class Question:
    id: int
    text: str
    answer: str
    gold: list[str]  # the file names of the documents that support the answer
    hops: int


@dataclass
class Corpus:
    documents: dict[str, str] = field(default_factory=dict)  # file name -> Markdown
    questions: list[Question] = field(default_factory=list)


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self) -> str:
        while True:
            word = "".join(self.rng.sample(_SYLLABLES, self.rng.choice([2, 3]))).capitalize()
            if word not in self.used and len(word) >= 5:
                self.used.add(word)
                return word


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def make_corpus(seed: int = 16, questions: int = 30) -> Corpus:
    rng = random.Random(seed)
    names = _Names(rng)
    corpus = Corpus()
    cities = [names.word() for _ in range(max(40, questions + 10))]
    for city in cities:
        corpus.documents[f"city-{_slug(city)}.md"] = (
            f"# {city}\n\n{city} is a city on the {rng.choice(_RIVERS)} river. "
            f"It has {rng.randrange(20, 900)} thousand inhabitants and a "
            f"{rng.choice(['harbour', 'university', 'cathedral'])}.\n"
        )

    def person(name: str, city: str) -> str:
        file = f"person-{_slug(name)}.md"
        corpus.documents[file] = (
            f"# {name}\n\n{name} is an engineer and entrepreneur. {name} was born in {city} in "
            f"{rng.randrange(1940, 1990)}. {name.split()[0]} studied {rng.choice(_INDUSTRIES)} engineering.\n"
        )
        return file

    def company(name: str, founder: str, founder_city: str) -> str:
        file = f"company-{_slug(name)}.md"
        year, seat = rng.randrange(1950, 2020), rng.choice([c for c in cities if c != founder_city])
        corpus.documents[file] = (
            f"# {name}\n\n{name} is a {rng.choice(_INDUSTRIES)} company. {name} was founded by {founder} in {year}. "
            f"Its headquarters are in {seat} and it employs {rng.randrange(40, 9000)} people.\n"
        )
        return file

    for number in range(questions):
        stem = names.word()
        kinds = rng.sample(_KINDS, 3)
        founder_city, *other_cities = rng.sample(cities, 4)
        founder = f"{names.word()} {names.word()}"
        name = f"{stem} {kinds[0]}"
        company_file = company(name, founder, founder_city)
        person_file = person(founder, founder_city)
        for kind, city in zip(kinds[1:], other_cities[:2], strict=True):  # same first word, another founder
            other = f"{names.word()} {names.word()}"
            company(f"{stem} {kind}", other, city)
            person(other, city)
        person(f"{names.word()} {founder.split()[1]}", other_cities[2])  # the founder's surname, born elsewhere
        if number % 3 == 2:
            question = Question(number, f"Who founded {name}?", founder, [company_file], 1)
        else:
            text = f"In which city was the founder of {name} born?"
            question = Question(number, text, founder_city, [company_file, person_file], 2)
        corpus.questions.append(question)
    return corpus


# ---- scoring ----------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"\w+", text.casefold()) if t not in ("a", "an", "the")]


def exact_match(report: str, answer: str) -> bool:
    return f" {' '.join(_tokens(answer))} " in f" {' '.join(_tokens(report))} "


def summary(report: str) -> str:
    """The report's first paragraph that is not a heading (a heading line that starts it is left out)."""
    for paragraph in re.split(r"\n\s*\n", report):
        lines = [line for line in paragraph.strip().splitlines() if not line.lstrip().startswith("#")]
        if " ".join(lines).strip():
            return " ".join(lines).strip()
    return ""


def f1(prediction: str, answer: str) -> float:
    predicted, gold = _tokens(prediction), _tokens(answer)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Outcome:
    question: int
    hops: int
    status: str
    em: bool
    f1: float
    cited: list[str]  # file names of the documents cited
    precision: float | None  # None: nothing cited
    recall: float
    notes: int  # notes kept (their quotes found in a document read), from the report thought's summary
    citations: int
    resolved: int  # citations whose URL the run read
    steps: int
    tokens: int
    seconds: float


def score(question: Question, interaction: dict[str, Any], seconds: float) -> Outcome:
    steps = interaction.get("steps") or []
    report = "".join(
        block.get("text", "") for s in steps if s["type"] == "model_output" for block in s.get("content") or []
    )
    citations = [
        a
        for s in steps
        if s["type"] == "model_output"
        for block in s.get("content") or []
        for a in block.get("annotations") or []
        if a.get("type") == "url_citation"
    ]
    read = {
        page["url"]
        for s in steps
        if s["type"] == "url_context_result"
        for page in s.get("result") or []
        if page.get("status") == "success"
    }
    cited = sorted({a["url"].rsplit("/", 1)[-1] for a in citations})
    summaries = " ".join(
        part if isinstance(part, str) else str(part.get("text", ""))
        for s in steps
        if s["type"] == "thought"
        for part in (s.get("summary") or [])
    )
    notes = re.search(r"Writing the report from (\d+) notes", summaries)
    gold = set(question.gold)
    return Outcome(
        question=question.id,
        hops=question.hops,
        status=str(interaction.get("status")),
        em=exact_match(report, question.answer),
        f1=f1(summary(report), question.answer),
        cited=cited,
        precision=len(gold.intersection(cited)) / len(cited) if cited else None,
        recall=len(gold.intersection(cited)) / len(gold),
        notes=int(notes.group(1)) if notes else 0,
        citations=len(citations),
        resolved=sum(a["url"] in read for a in citations),
        steps=len(steps),
        tokens=int((interaction.get("usage") or {}).get("total_tokens") or 0),
        seconds=seconds,
    )


# ---- the server and the runs ------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def write_config(path: Path, args: argparse.Namespace) -> str:
    """The server's configuration; returns the name of the model the agent thinks with."""
    if args.openai_base_url:
        model = args.model or "model"
        served = {"backend": "openai", "base_urls": [args.openai_base_url], "model": model}
        if args.api_key_env:
            served["api_key_env"] = args.api_key_env
    else:
        model = args.model or EMBEDDED
        served = {"backend": "llamacpp", "temperature": 0.0, "max_output_tokens": args.max_output_tokens}
    sections: dict[str, dict[str, Any]] = {
        "store": {"data_dir": str(path.parent / "data")},
        "limits": {"run_timeout_seconds": args.time_budget + 60},
        "tools.code_execution": {"enabled": False},
        f"models.{model}": served,
        f"agents.{AGENT}": {
            "model": model, "max_rounds": args.max_rounds, "max_questions": args.max_questions,
            "max_searches": args.max_searches, "max_reads": args.max_reads, "reads_per_search": args.reads_per_search,
            "max_document_chars": args.max_document_chars, "time_budget_seconds": float(args.time_budget),
        },
    }  # fmt: skip
    lines = []
    for section, values in sections.items():
        lines += [f"[{section}]", *(f"{key} = {_toml(value)}" for key, value in values.items()), ""]
    path.write_text("\n".join(lines))
    return model


async def ask(http: httpx.AsyncClient, question: Question, gate: asyncio.Semaphore) -> Outcome:
    async with gate:
        started = time.monotonic()
        body = {"agent": AGENT, "input": question.text, "background": True, "agent_config": AGENT_CONFIG}
        created = await http.post("/v1beta/interactions", json=body)
        created.raise_for_status()
        interaction = created.json()
        while interaction.get("status") not in _TERMINAL:
            await asyncio.sleep(0.5)
            interaction = (await http.get(f"/v1beta/interactions/{interaction['id']}")).raise_for_status().json()
        outcome = score(question, interaction, time.monotonic() - started)
        print(f"  q{question.id:02d} {outcome.status} em={int(outcome.em)} cited={outcome.cited} "
              f"{outcome.seconds:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
        return outcome


async def run_all(url: str, questions: list[Question], concurrency: int) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": "bench"}, timeout=60) as http:
        return list(await asyncio.gather(*(ask(http, q, gate) for q in questions)))


# ---- the table --------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f}" if values else "n/a"


def table(outcomes: list[Outcome]) -> str:
    head = "| question | hops | status | EM | F1 | notes | cit. P | cit. R | resolved | steps | tokens | s |"
    lines = [head, "|" + "---|" * 12]
    for o in outcomes:
        precision = "n/a" if o.precision is None else f"{o.precision:.2f}"
        resolved = f"{o.resolved}/{o.citations}"
        lines.append(
            f"| q{o.question:02d} | {o.hops} | {o.status} | {int(o.em)} | {o.f1:.2f} | {o.notes} | "
            f"{precision} | {o.recall:.2f} | {resolved} | {o.steps} | {o.tokens} | {o.seconds:.0f} |"
        )
    return "\n".join(lines)


def totals(outcomes: list[Outcome], model: str) -> str:
    citations = sum(o.citations for o in outcomes)
    completed = sum(o.status == "completed" for o in outcomes)
    cited = [o.precision for o in outcomes if o.precision is not None]
    rows = [
        ("model", model),
        ("questions", f"{len(outcomes)} ({completed} completed)"),
        ("exact match", _mean([float(o.em) for o in outcomes])),
        ("F1 (summary)", _mean([o.f1 for o in outcomes])),
        ("notes kept per question (mean)", _mean([float(o.notes) for o in outcomes])),
        ("citation precision", f"{_mean(cited)} (over the {len(cited)} questions with a citation)"),
        ("citation recall", _mean([o.recall for o in outcomes])),
        ("citations resolved to a document read", f"{sum(o.resolved for o in outcomes)}/{citations}"),
        ("steps per question (median)", f"{statistics.median(o.steps for o in outcomes):g}"),
        ("tokens per question (median)", f"{statistics.median(o.tokens for o in outcomes):g}"),
        ("wall time per question, s (median)", f"{statistics.median(o.seconds for o in outcomes):.1f}"),
    ]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=30, help="run the first N questions")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--openai-base-url", help="an OpenAI-compatible engine, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help=f"the engine's model (default: the embedded {EMBEDDED})")
    parser.add_argument("--api-key-env", help="the variable that holds the engine's API key")
    parser.add_argument("--max-output-tokens", type=int, default=256, help="per answer of the embedded model")
    parser.add_argument("--max-rounds", type=int, default=1)
    parser.add_argument("--max-questions", type=int, default=2)
    parser.add_argument("--max-searches", type=int, default=3)
    parser.add_argument("--max-reads", type=int, default=4)
    parser.add_argument("--reads-per-search", type=int, default=2)
    parser.add_argument("--max-document-chars", type=int, default=1500)
    parser.add_argument("--time-budget", type=float, default=300.0, help="seconds per question")
    parser.add_argument("--json", type=Path, help="write every question's outcome here")
    args = parser.parse_args()
    corpus = make_corpus(args.seed, max(30, args.questions))
    questions = corpus.questions[: args.questions]
    with tempfile.TemporaryDirectory(prefix="deep-research-bench-") as tmp:
        folder = Path(tmp)
        (folder / "corpus").mkdir()
        for name, text in corpus.documents.items():
            (folder / "corpus" / name).write_text(text)
        config = folder / "config.toml"
        model = write_config(config, args)
        subprocess.run([sys.executable, "-m", "openinteractions", "index", "add", str(folder / "corpus"),
                        "--config", str(config)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        port = free_port()
        print(f"{len(corpus.documents)} documents, {len(questions)} questions, model {model}", file=sys.stderr)
        with openinteractions(config, port):
            outcomes = asyncio.run(run_all(f"http://127.0.0.1:{port}", questions, args.concurrency))
    print(table(outcomes), end="\n\n")
    print(totals(outcomes, model))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))


if __name__ == "__main__":
    main()
