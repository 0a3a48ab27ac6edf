"""A research report's chart (``agent_config.visualization: "auto"``): numbers from the notes, drawn in the sandbox.

The model picks one series from the notes (labels, values, the note each value comes from) as JSON; a value is
kept only if its note's quote holds that number, so the chart shows only what the run read. The plotting code is
written here from the kept series, with every model-given string as a Python literal, and runs in the
``code_execution`` sandbox (matplotlib there), which hands the PNG back. Notes without any number get no chart
and no model call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .research_notes import Note

CHARTER = (
    "You make one chart from research notes. Take one series of numbers from the notes that belong together "
    "(the same quantity and unit), each with a short label and the number of the note it comes from. "
    "Answer with an empty list of points if the notes hold no such numbers."
)
CHART_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "unit": {"type": "string", "maxLength": 30},
        "points": {
            "type": "array",
            "maxItems": 12,
            "items": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "maxLength": 40},
                    "value": {"type": "number"},
                    "note": {"type": "integer"},
                },
                "required": ["label", "value", "note"],
            },
        },
    },
    "required": ["title", "unit", "points"],
}
CHART_FILE = "chart.png"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    labels: list[str]
    values: list[float]

    def record(self) -> dict[str, Any]:
        return {"title": self.title, "unit": self.unit, "labels": self.labels, "values": self.values}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Chart:
        return cls(str(record["title"]), str(record["unit"]), list(record["labels"]), list(record["values"]))


def has_numbers(notes: list[Note]) -> bool:
    return any(_NUMBER.search(note.quote) for note in notes)


def listed(notes: list[Note]) -> str:
    return "\n".join(f'{i}. {note.claim} ("{note.quote}")' for i, note in enumerate(notes, 1))


def checked_chart(answer: dict[str, Any], notes: list[Note]) -> Chart | None:
    """The series the model gave, less every point whose value is not a number in its note's quote; None
    unless two points are left."""
    points = answer.get("points")
    labels: list[str] = []
    values: list[float] = []
    for point in points if isinstance(points, list) else []:
        if not isinstance(point, dict):
            continue
        label, value, number = point.get("label"), point.get("value"), point.get("note")
        if not (isinstance(label, str) and label.strip() and isinstance(value, int | float)):
            continue
        if not (isinstance(number, int) and 1 <= number <= len(notes)) or label.strip() in labels:
            continue
        if float(value) in _numbers(notes[number - 1].quote):
            labels.append(label.strip())
            values.append(float(value))
    if len(labels) < 2:
        return None
    title, unit = answer.get("title"), answer.get("unit")
    return Chart(str(title or "").strip() or "Figures from the sources", str(unit or "").strip(), labels, values)


def _numbers(text: str) -> set[float]:
    return {float(match.replace(",", "")) for match in _NUMBER.findall(text)}


def plotting_code(chart: Chart) -> str:
    """A bar chart of ``chart``, saved as ``CHART_FILE``; every string is a literal (repr), never code."""
    return "\n".join([
        "import matplotlib",
        'matplotlib.use("Agg")',
        "import matplotlib.pyplot as plt",
        "",
        f"labels = {chart.labels!r}",
        f"values = {chart.values!r}",
        "fig, ax = plt.subplots(figsize=(7, 4), dpi=100)",
        'ax.bar(labels, values, color="#4285f4")',
        f"ax.set_title({chart.title!r})",
        f"ax.set_ylabel({chart.unit!r})",
        'ax.tick_params(axis="x", labelrotation=20)',
        "fig.tight_layout()",
        f"fig.savefig({CHART_FILE!r})",
        f'print("drew {CHART_FILE}:", len(values), "bars")',
    ])  # fmt: skip
