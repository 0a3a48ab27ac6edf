from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai

import netguard
from live import FIXTURES, LiveServer

SEED_MODEL = "gemini-3-flash-preview"


def pytest_sessionstart(session: pytest.Session) -> None:
    """No test may send a packet off this machine: the suite runs in a loopback-only network namespace
    (scripts/test, scripts/isolated), and refuses to start outside one unless told to run on the host network."""
    problem = netguard.isolation_problem()
    if problem is not None and os.environ.get(netguard.OPT_OUT) != "host":
        pytest.exit(
            f"the tests must run without a network: run them through scripts/test or scripts/isolated "
            f"(or set {netguard.OPT_OUT}=host to run them on the host network anyway): {problem}",
            returncode=3,
        )


def pytest_report_header() -> str:
    problem = netguard.isolation_problem()
    return "network: isolated, loopback only" if problem is None else f"network: NOT ISOLATED: {problem}"


def scripted_model(record: Path | None = None, **extra: object) -> dict[str, object]:
    model: dict[str, object] = {
        "backend": "scripted",
        "script": FIXTURES / "seed.json",
        "inline": True,
        "aliases": ["gemini-2.5-flash", "gemini-3.5-flash", "gemini-3.1-flash-image-preview"],
    }
    if record is not None:
        model["record"] = record
    model.update(extra)
    return model


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("server")
    live = LiveServer(workdir, {f"models.{SEED_MODEL}": scripted_model(record=workdir / "requests.jsonl")})
    live.index(FIXTURES / "corpus")
    live.start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="test-key", http_options={"base_url": server.url})


@pytest.fixture
def sdk_env(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    """Point unmodified ``genai.Client()`` / ``new GoogleGenAI({})`` at the live server, as a user would."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)
    return server
