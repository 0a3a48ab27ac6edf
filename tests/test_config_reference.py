"""docs/configuration-reference.md is generated from the settings model: it must match what the code says now."""

from __future__ import annotations

from pathlib import Path

from openinteractions.config import Settings
from openinteractions.config_reference import render

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration-reference.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render(), (
        "docs/configuration-reference.md is out of date: run "
        "`.venv/bin/python -m openinteractions.config_reference > docs/configuration-reference.md`"
    )


def test_every_section_and_key_is_in_it() -> None:
    text = render()
    for name in Settings.model_fields:
        assert f"`{name}`" in text or f"[{name}" in text
    for key in ("replica_grace_seconds", "run_claim_seconds", "sandbox_memory_mb", "retry_window_seconds",
                "time_budget_seconds", "open_metrics"):  # fmt: skip
        assert f"| `{key}` |" in text
