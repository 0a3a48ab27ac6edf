"""The seed's Python examples, verbatim, through google-genai against the live server."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from live import LiveServer

SEED = Path(__file__).parent / "seed_py"


def run_seed(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    runpy.run_path(str(SEED / f"{name}.py"), run_name="__main__")
    return capsys.readouterr().out


def test_count_to_25(sdk_env: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_seed("count", capsys)
    assert out == ", ".join(str(n) for n in range(1, 26))


def test_function_calling_two_turns(sdk_env: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_seed("function_calling", capsys)
    assert out == "The weather is sunny, 22°C."


def test_function_and_search_tool_steps(sdk_env: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_seed("multi_tool", capsys)
    search_id = re.search(r"--- Step 0: google_search_call ---\n  Search ID: (\w{8})\n", out).group(1)
    assert "  Queries: queries=['largest mountain in Europe']" in out
    assert f"--- Step 1: google_search_result ---\n  Result for: {search_id}" in out
    assert "--- Step 2: thought ---" in out
    assert "--- Step 3: function_call ---\n  Function: get_weather({})" in out
    args = out.split("--- Step 3: function_call ---")[1]
    assert "Args chunk: " in args
    fragments = [part.split("\n")[0] for part in args.split("  Args chunk: ")[1:]]
    assert "".join(fragments) == '{"location": "Mount Elbrus, Russia"}'
    assert out.endswith("Status: requires_action\nAction required: provide function call results to continue.\n")


def test_thinking_summaries(sdk_env: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_seed("thinking", capsys)
    assert out.startswith("\n--- Step: thought ---\n**Implementing Euclidean Algorithm**")
    assert out.endswith("\n--- Step: model_output ---\nThe greatest common divisor of 1071 and 462 is 21.")


def test_deep_research_agent_runs(sdk_env: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's agent example, unchanged: the agent thinks with the only served model (the scripted one, whose
    catch-all rule plans nothing usable, so the request itself is searched) and searches an empty index."""
    out = run_seed("agent", capsys)
    assert out.startswith(
        "\n--- Step: thought ---\n**Planning the research**\n\nTo answer this, I will look into:\n1. "
    )
    assert "\n--- Step: google_search_call ---\n\n--- Step: google_search_result ---\n" in out
    assert re.search(r"--- Step: model_output ---\n.+\n\nTotal Tokens: [1-9]\d*\n$", out, re.DOTALL)


def test_image_output_without_an_image_backend_says_what_to_configure(
    sdk_env: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """This server has no [images] backend (tests/test_images.py runs the example against one that has)."""
    from google.genai._interactions import BadRequestError

    with pytest.raises(BadRequestError) as err:
        run_seed("image", capsys)
    assert err.value.status_code == 400
    assert "needs an image backend" in str(err.value)
    assert "[images.<name>]" in str(err.value) and 'backend = "interleaved"' in str(err.value)
