"""The seed's JS examples, verbatim, and the SDK's other calls, through @google/genai (node) against the live
server."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from live import LiveServer

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module", autouse=True)
def sdk_installed() -> None:
    if not (JS / "node_modules" / "@google" / "genai").is_dir():
        pytest.fail("run `npm ci` in tests/js (scripts/test does it)")


def node(script: Path, server: LiveServer, *args: str, api_key: str = "test-key") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": api_key}
    env.pop("GOOGLE_API_KEY", None)
    return subprocess.run(["node", str(script), *args], capture_output=True, text=True, env=env, timeout=60, cwd=JS)


def test_count_to_25(server: LiveServer) -> None:
    result = node(JS / "seed" / "count.mjs", server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ", ".join(str(n) for n in range(1, 26))


def test_function_calling_two_turns(server: LiveServer) -> None:
    result = node(JS / "seed" / "function_calling.mjs", server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "The weather is sunny, 22°C."


def test_thinking_summaries(server: LiveServer) -> None:
    result = node(JS / "seed" / "thinking.mjs", server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\n--- Step: thought ---\n**Implementing Euclidean Algorithm**")
    assert result.stdout.endswith("--- Step: model_output ---\nThe greatest common divisor of 1071 and 462 is 21.")


def test_multi_tool_verbatim_hits_the_seed_bug_like_the_real_service(server: LiveServer) -> None:
    """The verbatim example reads ``event.step.type`` on a step.delta, where ``step`` does not exist: it throws
    at the google_search_result delta, exactly as it would against the real service."""
    result = node(JS / "seed" / "multi_tool.mjs", server)
    assert result.returncode != 0
    assert "--- Step 1: google_search_result ---" in result.stdout
    assert "Cannot read properties of undefined (reading 'type')" in result.stderr


def test_multi_tool_with_the_seed_bug_fixed(server: LiveServer) -> None:
    result = node(JS / "seed_multi_tool_fixed.mjs", server)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    search_id = re.search(r"--- Step 0: google_search_call ---\n  Search ID: (\w{8})\n", out).group(1)
    assert '  Queries: ["largest mountain in Europe"]' in out
    assert f"--- Step 1: google_search_result ---\n  Result for: {search_id}" in out
    assert "--- Step 3: function_call ---\n  Function: get_weather({})" in out
    fragments = [p.split("\n")[0] for p in out.split("  Args chunk: ")[1:]]
    assert "".join(fragments) == '{"location": "Mount Elbrus, Russia"}'
    assert out.endswith("Status: requires_action\nAction required: provide function call results to continue.\n")


def test_deep_research_agent_runs(server: LiveServer) -> None:
    result = node(JS / "seed" / "agent.mjs", server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\n--- Step: thought ---\n**Planning the research**")
    assert "--- Step: google_search_call ---" in result.stdout
    assert re.search(r"--- Step: model_output ---\n.+\n\nTotal Tokens: [1-9]\d*\n$", result.stdout, re.DOTALL)


def test_image_output_without_an_image_backend_is_refused_clearly(server: LiveServer) -> None:
    """This server has no [images] backend (tests/test_images.py runs the example against one that has)."""
    result = node(JS / "seed" / "image.mjs", server)
    assert result.returncode != 0
    assert "BadRequestError" in result.stderr and "needs an image backend" in result.stderr


def test_sdk_calls(server: LiveServer) -> None:
    result = node(JS / "sdk_calls.mjs", server)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["created"]["status"] == "completed"
    assert report["created"]["output_text"] == "Hello from the scripted backend."
    assert report["got"]["steps"] == report["created"]["steps"]
    assert report["replayed"][0] == "interaction.created"
    assert report["replayed"][-1] == "interaction.completed"
    assert report["resumed"] == report["replayed"][3:]
    assert report["errors"] == {
        "badRequest": ["BadRequestError", 400],
        "notFound": ["NotFoundError", 404],
        "unknownModel": ["NotFoundError", 404],
    }
    assert report["deleted"] == ["NotFoundError", 404]
    assert report["unknownEventSkipped"] == "before after"
    assert report["midStreamError"] == {"error": "gateway_timeout", "last": "error", "status": "failed"}
    assert report["background"] == {
        "created": "in_progress",
        "followed": [
            "interaction.created",
            "interaction.status_update",
            "step.start",
            "step.delta",
            "step.stop",
            "interaction.completed",
        ],
        "final": "cancelled",
    }


def test_auth_errors(server: LiveServer, tmp_path: Path) -> None:
    keyed = LiveServer(
        tmp_path,
        {
            "auth": {"api_keys": ["secret-key-1234"]},
            "models.gemini-3-flash-preview": {"backend": "scripted", "inline": True},
        },
    )
    keyed.start()
    try:
        result = node(JS / "auth.mjs", keyed, api_key="wrong-key-000")
    finally:
        keyed.stop()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"wrong": ["PermissionDeniedError", 403]}
