"""Issue 16's acceptance: the seed's agent examples (Python and JS), unchanged, against a server whose only model
is the embedded default (SmolLM2-135M by llama.cpp) and whose google_search is the local index, filled here with
a small corpus. A 135M model's report is not judged; what is asserted is the research's course (plan thoughts,
searches, reads, a report), the status, the usage, and that every citation points at a document the run read.

The model decodes greedily (reproducible) and the agent's budgets are small (one search round, two questions,
up to three documents read): on a shared 2-core VM the two examples took 25-80 s together when it was quiet, 6
min under a load average of 9 (most of it JSON-constrained decoding). A 135M model keeps few notes and its
report seldom cites; the citation check holds whatever it cites (the scripted tests in test_agents.py make the
model cite; the note check's own tests below give it what small models write)."""

from __future__ import annotations

import os
import runpy
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai

from live import LiveServer
from openinteractions.backends.llamacpp.models import DEFAULT_MODEL_NAME
from openinteractions.engine.research_notes import Note, checked

AGENT = "deep-research-preview-04-2026"
SEED_PY = Path(__file__).parent / "seed_py" / "agent.py"
JS = Path(__file__).parent / "js"
CORPUS = {
    "superconducting-qubits.md": (
        "# Superconducting qubits\n\n"
        "Superconducting qubits are the most common platform in quantum computing. "
        "In 2024 a superconducting processor showed error correction below the surface code threshold. "
        "Logical qubits lived longer as the code distance grew from three to seven.\n"
    ),
    "trapped-ions.md": (
        "# Trapped ion quantum computers\n\n"
        "Trapped ion quantum computers hold atoms in electromagnetic traps. "
        "Trapped ions reach two-qubit gate fidelities above 99.9 percent. "
        "Their gates are slower than those of superconducting qubits.\n"
    ),
    "neutral-atoms.md": (
        "# Neutral atom arrays\n\n"
        "Neutral atom arrays trap hundreds of atoms with optical tweezers. "
        "In 2023 a neutral atom quantum computer ran algorithms on 48 logical qubits. "
        "Atoms can be moved during a computation.\n"
    ),
    "quantum-algorithms.md": (
        "# Quantum algorithms\n\n"
        "Shor's algorithm factors integers in polynomial time on a quantum computer. "
        "Grover's algorithm searches an unsorted list with a quadratic speedup. "
        "Recent advances in quantum computing lowered the qubits needed to factor RSA keys.\n"
    ),
    "sourdough.md": (
        "# Sourdough bread\n\nSourdough bread rises with wild yeast and lactic acid bacteria. "
        "The starter is fed daily.\n"
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("agents-embedded")
    corpus = workdir / "corpus"
    corpus.mkdir()
    for name, text in CORPUS.items():
        (corpus / name).write_text(text)
    budgets = {"max_rounds": 1, "max_questions": 2, "max_searches": 2, "max_reads": 3, "reads_per_search": 2,
               "max_document_chars": 1200, "time_budget_seconds": 600.0}  # fmt: skip
    sections = {
        # The embedded default, the only model, decoding greedily (the run is reproducible), 256 tokens an answer.
        f"models.{DEFAULT_MODEL_NAME}": {"backend": "llamacpp", "temperature": 0.0, "max_output_tokens": 256},
        f"agents.{AGENT}": budgets,
        "tools.code_execution": {"enabled": False},
        "store": {"sqlite_exclusive": False},  # the test reads the new interactions' ids from the store's file
    }
    live = LiveServer(workdir, sections)
    live.index(corpus)
    live.start()
    yield live
    live.stop()


def interaction_ids(server: LiveServer) -> list[str]:
    with sqlite3.connect(server.data_dir / "openinteractions.db") as db:
        return [row[0] for row in db.execute("SELECT id FROM interactions ORDER BY created_at")]


def stored(server: LiveServer, interaction_id: str) -> dict[str, Any]:
    client = genai.Client(api_key="k", http_options={"base_url": server.url})
    return client.interactions.get(interaction_id).model_dump(mode="json", exclude_none=True)  # type: ignore[no-any-return]


def check_research(server: LiveServer, out: str, interaction_id: str) -> dict[str, Any]:
    """What the seed printed and what the server stored show a whole research whose citations all point at
    documents this run read."""
    assert out.startswith("\n--- Step: thought ---\n**Planning the research**\n\nTo answer this, I will look into:\n1.")
    for step in ("google_search_call", "google_search_result", "url_context_call", "url_context_result"):
        assert f"\n--- Step: {step} ---\n" in out
    assert "**Reading**\n\nReading: " in out
    total = int(out.rsplit("\n\nTotal Tokens: ", 1)[1])
    interaction = stored(server, interaction_id)
    assert interaction["status"] == "completed" and interaction["agent"] == AGENT
    steps = interaction["steps"]
    assert steps[-1]["type"] == "model_output"
    report = steps[-1]["content"][0]
    assert report["text"].strip() and f"\n--- Step: model_output ---\n{report['text']}" in out
    read = {
        page["url"]
        for step in steps
        if step["type"] == "url_context_result"
        for page in step.get("result") or []
        if page["status"] == "success"
    }
    assert read and all(url.startswith("file://") and url.rsplit("/", 1)[1] in CORPUS for url in read)
    for citation in report.get("annotations") or []:
        assert citation["type"] == "url_citation" and citation["url"] in read
    usage = interaction["usage"]
    assert usage["total_tokens"] == total and usage["total_input_tokens"] > 0 and usage["total_output_tokens"] > 0
    return interaction


def test_seed_python_agent_on_the_embedded_model(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    before = interaction_ids(server)
    runpy.run_path(str(SEED_PY), run_name="__main__")
    out = capsys.readouterr().out
    (new,) = [i for i in interaction_ids(server) if i not in before]
    check_research(server, out, new)


def test_seed_js_agent_on_the_embedded_model(server: LiveServer) -> None:
    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": "k"}
    env.pop("GOOGLE_API_KEY", None)
    before = interaction_ids(server)
    result = subprocess.run(["node", str(JS / "seed" / "agent.mjs")], capture_output=True, text=True, env=env,
                            timeout=300, cwd=JS)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (new,) = [i for i in interaction_ids(server) if i not in before]
    check_research(server, result.stdout, new)


# ---- the note check, on what small models write ------------------------------------------------------------

PAGES = [
    {"url": "file:///ions.md", "title": "Trapped ion quantum computers", "text": " ".join(
        ["# Trapped ion quantum computers Trapped ion quantum computers hold atoms in electromagnetic traps.",
         "Trapped ions reach two-qubit gate fidelities above 99.9 percent."])},
    {"url": "file:///algorithms.md", "title": "Quantum algorithms", "text": " ".join(
        ["# Quantum algorithms Shor's algorithm factors integers in polynomial time on a quantum computer.",
         "Grover's algorithm searches an unsorted list with a quadratic speedup."])},
    {"url": "file:///tarta.md", "title": "Vikquo Tarta", "text": "Vikquo Tarta founded Garvelvan Robotics in 1997. "
     "Vikquo Tarta was born in Tarvik in 1942."},
]  # fmt: skip
FIDELITY = "Trapped ions reach two-qubit gate fidelities above 99.9 percent."
SHOR = "Shor's algorithm factors integers in polynomial time on a quantum computer."


@pytest.mark.parametrize(
    "item, kept",
    [
        ({"source": 1, "claim": "Ions are precise", "quote": "  trapped IONS reach two-qubit gate\nfidelities"},
         Note("file:///ions.md", "Trapped ion quantum computers", "Ions are precise",
              "trapped IONS reach two-qubit gate\nfidelities")),  # verbatim (case and spaces aside): as it is
        ({"source": 1, "claim": "Ions are precise", "quote": "Trapped ions reach two qubit gate fidelity above 99.9%"},
         Note("file:///ions.md", "Trapped ion quantum computers", "Ions are precise", FIDELITY)),
        ({"source": 1, "claim": "Shor factors integers fast", "quote": SHOR.rstrip(".") + ","},  # wrong document
         Note("file:///algorithms.md", "Quantum algorithms", "Shor factors integers fast", SHOR)),
        ({"source": 2, "claim": "2},{ 2022-01-22", "quote": SHOR + " Grover's algorithm searches a list. Quantum"},
         Note("file:///algorithms.md", "Quantum algorithms", SHOR, SHOR)),  # runs on; a claim without words
        ({"source": 2, "claim": "Trapped ion quantum computers hold atoms in traps", "quote": "Quantum computers are"},
         Note("file:///ions.md", "Trapped ion quantum computers", "Trapped ion quantum computers hold atoms in traps",
              "Trapped ion quantum computers hold atoms in electromagnetic traps.")),  # the claim copies a sentence
        ({"source": 1, "claim": "Garvelvan Robotics was founded by Vikquo Tarta", "quote": "bla bla bla"},
         Note("file:///tarta.md", "Vikquo Tarta", "Garvelvan Robotics was founded by Vikquo Tarta",
              "Vikquo Tarta founded Garvelvan Robotics in 1997.")),  # the same words, reordered
        ({"source": 3, "claim": "Tarta was born in Dumorta", "quote": "Vikquo Tarta was born in Dumorta in 1942."},
         None),  # all but a name: not a copy
        ({"source": 3, "claim": "Tarta was born in Dumorta", "quote": "Vikquo Tarta was born in Tarvik, 1942"},
         Note("file:///tarta.md", "Vikquo Tarta", "Vikquo Tarta was born in Tarvik in 1942.",
              "Vikquo Tarta was born in Tarvik in 1942.")),  # a claim that names what its quote does not
        ({"source": 1, "claim": "gruefs", "quote": "2},{"}, None),
        ({"source": 1, "claim": "Quantum computers are fast", "quote": "Quantum computing is a key area of quantum "
          "computers, and quantum algorithms are a key area of quantum computing."}, None),  # common words only
        ({"source": 3, "claim": "Ions are precise", "quote": "no such document"}, None),
        ({"source": "1", "claim": "Ions are precise", "quote": FIDELITY}, None),
    ],
)  # fmt: skip
def test_a_note_is_kept_only_with_the_exact_text_of_a_document_read(item: dict[str, Any], kept: Note | None) -> None:
    note = checked(item, PAGES)
    assert note == kept
    if note is not None:  # what is kept quotes a read document's own text
        page = next(p for p in PAGES if p["url"] == note.url)
        assert " ".join(note.quote.split()).casefold() in " ".join(page["text"].split()).casefold()
