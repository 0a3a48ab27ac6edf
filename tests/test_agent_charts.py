"""visualization: "auto": a research agent draws a chart of the figures in its notes, in the code_execution
sandbox, and ends its report with it as an ``image``. The agent thinks with the scripted backend (a test double
for the model only); the search, the reads, the sandbox and matplotlib are real. Only figures that the notes'
quotes hold are drawn."""

from __future__ import annotations

import ast
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from live import FIXTURES, LiveServer
from openinteractions.engine.research_chart import Chart, checked_chart, plotting_code
from openinteractions.engine.research_notes import Note
from protocol import check_stream
from resuming import CrashingServer, ResumingReader, check_ids, model_text, streamed_text, wait_for
from test_agents import AGENT, answer, client_for, note, rule, seed_request

CHARTS = {"type": "deep-research", "thinking_summaries": "auto", "visualization": "auto"}
ELBRUS_HEIGHT = "the western summit stands at 5,642 metres (18,510 ft)"
MONT_BLANC_HEIGHT = "rising 4,805 metres above sea level"
REPORT = "# Two summits\n\nElbrus stands at 5,642 metres [1]. Mont Blanc rises 4,805 metres [2].\n"
SERIES = {
    "title": "Summit heights",
    "unit": "metres",
    "points": [
        {"label": "Elbrus", "value": 5642, "note": 1},
        {"label": "Mont Blanc", "value": 4805, "note": 2},
        {"label": "Matterhorn", "value": 4478, "note": 1},  # in no note: not drawn
    ],
}
NOTES = "You take research notes"


def script(elbrus: str, mont_blanc: str, report: list[dict[str, Any]]) -> dict[str, Any]:
    mont_blanc_notes = answer({"notes": [note(1, "Mont Blanc rises 4,805 m", mont_blanc)]})
    elbrus_notes = answer({"notes": [note(1, "Elbrus's western summit is 5,642 m", elbrus)]})
    return {
        "rules": [
            rule(answer({"questions": ["Mount Elbrus height", "Mont Blanc height"]}), system_contains="You plan"),
            rule(mont_blanc_notes, system_contains=NOTES, input_contains="Question: Mont Blanc height"),
            rule(elbrus_notes, system_contains=NOTES),
            rule(answer({"questions": []}), system_contains="You review research notes"),
            rule(answer(SERIES), system_contains="You make one chart"),
            rule(report, system_contains="You write the research report"),
        ]
    }


FIGURES = script(ELBRUS_HEIGHT, MONT_BLANC_HEIGHT, [{"text": REPORT}])
NO_FIGURES = script("Mount Elbrus is the highest and most prominent peak in Russia and in Europe",
                    "Mont Blanc is the highest mountain in the Alps", [{"text": REPORT}])  # fmt: skip
HALF = REPORT.index("Mont Blanc")
HANGS_IN_REPORT = script(ELBRUS_HEIGHT, MONT_BLANC_HEIGHT, [{"text": REPORT[:HALF]}, {"hang": True}])
GOES_ON = script(ELBRUS_HEIGHT, MONT_BLANC_HEIGHT, [{"text": REPORT[:HALF]}, {"text": REPORT[HALF:]}])


def charts_server(workdir: Path) -> LiveServer:
    for name, body in {"figures": FIGURES, "plain": NO_FIGURES, "slow": HANGS_IN_REPORT}.items():
        (workdir / f"{name}.json").write_text(json.dumps(body))
    sections = {
        "models.charter": {"backend": "scripted", "script": workdir / "figures.json"},
        "models.plain": {"backend": "scripted", "script": workdir / "plain.json"},
        "models.slow": {"backend": "scripted", "script": workdir / "slow.json"},
        f"agents.{AGENT}": {"model": "charter", "reads_per_search": 1},
        "agents.plain-researcher": {"model": "plain", "reads_per_search": 1},
        "agents.slow-researcher": {"model": "slow", "reads_per_search": 1},
        "tools.code_execution": {"wall_seconds": 30, "cpu_seconds": 20},
    }
    server = LiveServer(workdir, sections)
    server.index(FIXTURES / "corpus")
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = charts_server(tmp_path_factory.mktemp("charts")).start()
    yield live
    live.stop()


def chart_of(step: dict[str, Any]) -> Image.Image:
    images = [c for c in step["content"] if c["type"] == "image"]
    assert len(images) == 1 and images[0]["mime_type"] == "image/png"
    image = Image.open(io.BytesIO(base64.b64decode(images[0]["data"])))
    image.load()  # decodes every pixel: a truncated or corrupt PNG fails here
    return image


def test_the_report_ends_with_a_chart_of_the_figures_it_read(server: LiveServer) -> None:
    client = client_for(server)
    events = [
        e.model_dump(mode="json", exclude_none=True, by_alias=True)
        for e in client.interactions.create(stream=True, **seed_request(agent_config=CHARTS))
    ]
    result = check_stream(events)
    assert result["status"] == "completed"
    kinds = [s["type"] for s in result["steps"]]
    assert kinds[-5:] == ["thought", "code_execution_call", "code_execution_result", "thought", "model_output"]
    chart_thought = result["steps"][-5]["summary"]
    assert chart_thought == '**Charting the figures**\n\nDrawing "Summit heights" from 2 figures in the notes.'
    streamed = [e["delta"]["type"] for e in events if e["event_type"] == "step.delta" and e["index"] == len(kinds) - 1]
    assert streamed[-2:] == ["text_annotation_delta", "image"]  # the chart streams as an image delta

    interaction = client.interactions.get(events[0]["interaction"]["id"]).model_dump(mode="json", exclude_none=True)
    call, output = interaction["steps"][-4], interaction["steps"][-3]
    code = call["arguments"]["code"]
    assert "import matplotlib" in code and "'Mont Blanc'" in code and "Matterhorn" not in code
    assert output["result"] == "drew chart.png: 2 bars\n" and not output.get("is_error")
    report = interaction["steps"][-1]
    assert [c["type"] for c in report["content"]] == ["text", "image"] and report["content"][0]["text"] == REPORT
    image = chart_of(report)
    assert image.format == "PNG" and image.size == (700, 400)
    assert len(image.getcolors(maxcolors=1 << 16) or []) > 2  # bars, text and axes, not a blank canvas


def test_notes_without_figures_get_no_chart(server: LiveServer) -> None:
    client = client_for(server)
    created = client.interactions.create(**seed_request(agent="plain-researcher", agent_config=CHARTS))
    wait_for(lambda: client.interactions.get(created.id).status != "in_progress", seconds=30)
    done = client.interactions.get(created.id)
    assert done.status == "completed"
    assert "code_execution_call" not in [s.type for s in done.steps]
    assert [c.type for c in done.steps[-1].content] == ["text"]


def test_a_run_killed_while_writing_its_report_keeps_its_chart(tmp_path: Path) -> None:
    """SIGKILL while the report is written, after the chart was drawn; the next life continues the report, draws
    the chart again from the logged call without a new step, and ends with the same image."""
    crashing = CrashingServer(charts_server(tmp_path))
    crashing.start()
    try:
        client = client_for(crashing.server)
        reference = client.interactions.create(**seed_request(agent_config=CHARTS))
        created = client.interactions.create(**seed_request(agent="slow-researcher", agent_config=CHARTS))
        reader = ResumingReader(crashing, created.id)
        reader.start()
        wait_for(lambda: any(e["event_type"] == "step.delta" and e["delta"]["type"] == "text" for e in reader.events),
                 what="the report to start")  # fmt: skip
        crashing.kill()
        (tmp_path / "slow.json").write_text(json.dumps(GOES_ON))
        crashing.start()
        reader.join(60)
        wait_for(lambda: client.interactions.get(reference.id).status != "in_progress")
        got = client.interactions.get(created.id).model_dump(mode="json", exclude_none=True)
        want = client.interactions.get(reference.id).model_dump(mode="json", exclude_none=True)
    finally:
        crashing.stop()
    assert reader.done and reader.failure is None and not reader.unexpected, (reader.failure, reader.unexpected)
    check_ids(reader.events)
    assert got["status"] == "completed"
    starts = [e["step"]["type"] for e in reader.events if e["event_type"] == "step.start"]
    assert starts.count("code_execution_call") == 1  # drawn again after the restart, not called again
    assert streamed_text(reader.events) == model_text(got["steps"]) == [REPORT]
    assert got["steps"][-1]["content"][1] == want["steps"][-1]["content"][1]  # the same PNG, byte for byte
    chart_of(got["steps"][-1])


def test_only_figures_in_the_notes_are_kept() -> None:
    notes = [Note("u1", "t", "c", ELBRUS_HEIGHT), Note("u2", "t", "c", MONT_BLANC_HEIGHT)]
    chart = checked_chart(SERIES, notes)
    assert chart == Chart("Summit heights", "metres", ["Elbrus", "Mont Blanc"], [5642.0, 4805.0])
    made_up = {"title": "x", "unit": "m", "points": [{"label": "Elbrus", "value": 5000, "note": 1},
                                                     {"label": "Mont Blanc", "value": 4805, "note": 2}]}  # fmt: skip
    assert checked_chart(made_up, notes) is None  # one figure left: nothing to chart
    wrong_note = {"title": "x", "unit": "m", "points": [{"label": "a", "value": 5642, "note": 2},
                                                        {"label": "b", "value": 4805, "note": 3}]}  # fmt: skip
    assert checked_chart(wrong_note, notes) is None


def test_plotting_code_keeps_model_strings_as_literals() -> None:
    hostile = 'x"); import os; os.system("touch /tmp/owned"); ("'
    code = plotting_code(Chart(hostile, hostile, [hostile, "b"], [1.0, 2.0]))
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)]
    names = {ast.unparse(c.func) for c in calls}
    assert names == {"matplotlib.use", "plt.subplots", "ax.bar", "ax.set_title", "ax.set_ylabel", "ax.tick_params",
                     "fig.tight_layout", "fig.savefig", "print", "len"}  # fmt: skip
