"""Fuzzing the live server from its own OpenAPI document with schemathesis: the server to fuzz, one run, and
what came of it. Used by tests/test_fuzz.py (a bounded run) and bench/fuzz.py (a long one)."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.engine.recorder import ScenarioRecorder

from live import LiveServer

KEY = "fuzz-key-0123456789"
_VERSION = re.compile(r"v[0-9]+((alpha|beta)[0-9]*)?")  # api/routes.py's
MODEL = "fuzz-model"
PAINTER = "fuzz-painter"  # the scripted model paired with an images API on loopback: image output
AGENT = "fuzz-agent"  # Deep Research on the scripted model, on the local search index
# The model thinks (a thought step, so continued chains carry signatures to verify), then answers in two
# parts with a pause between them, so that a cancel that follows a background create can find it running.
# Asked for text and images (by the painter), it writes them as parts.
PARTS = {"parts": [{"text": "A picture: "}, {"image": "a small red square"}, {"text": "There."}]}
SCRIPT = {
    "rules": [
        {"when": {"system_contains": "mixes text and generated images"}, "events": [{"text": json.dumps(PARTS)}]},
        {"when": {"last_step": "function_result"}, "events": [{"text": "Thanks for the result."}]},
        {"events": [{"thought": "Plan the answer."}, {"text": "Hello "}, {"sleep_ms": 20}, {"text": "there."}]},
    ]
}


def fuzz_server(workdir: Path) -> LiveServer:
    """A server with API keys (the fuzzer runs authenticated; its auth checks also send none or a wrong one)
    and no tool that could send a packet off this machine, whatever the fuzzer puts in a request:

    - url_context is off: with it on, the URLs in a prompt are read before the model runs, and its address
      policy admits every public address (allow_networks only adds to that), so it cannot be held to
      loopback. A request that lists the tool gets a 400 saying it is disabled.
    - google_search uses the `local` provider, a SQLite index on disk; `searxng` would send queries to its URL.
    - code_execution is off: no fuzzed request can make the scripted model call it, and whether the sandbox
      can start differs between machines, which would make the run's answers differ too.
    - content given by URI (images, documents, ...) is refused: the scripted model takes text only. Fields
      that name URLs elsewhere (mcp_server tools, webhook_config) are never implemented, so always a 400.
    - images are drawn by an images API in this process, on loopback (a 1x1 PNG whatever is asked); audio is
      spoken by the speech backend the machine has (espeak-ng or Piper; none: a 400 for audio output).
    """
    script = workdir / "script.json"
    script.write_text(json.dumps(SCRIPT))
    sections: dict[str, dict[str, Any]] = {
        f"models.{MODEL}": {"backend": "scripted", "script": script, "aliases": ["fuzz-alias"]},
        "auth": {"api_keys": [KEY]},
        "tools.google_search": {"provider": "local"},
        "tools.url_context": {"enabled": False},
        "tools.code_execution": {"enabled": False},
        # The create rate limit is off: at the fuzzer's pace it would answer most creates with 429, and the
        # sequences it builds from a created interaction would never start (tests/test_quotas.py covers it).
        "limits": {"run_timeout_seconds": 10.0, "create_rate_per_second": 0},
        f"agents.{AGENT}": {"model": MODEL, "max_rounds": 1, "max_questions": 1, "time_budget_seconds": 5.0},
        f"models.{PAINTER}": {"backend": "interleaved", "text": MODEL, "images": "drawer"},
        # any size the document names is drawn (the API answers a pixel whatever the size)
        "images.drawer": {"backend": "openai", "base_url": _images_api(), "default_size": 64, "max_size": 16384},
    }
    return LiveServer(workdir, sections)


_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


class _ImagesApi(BaseHTTPRequestHandler):
    """``POST /v1/images/generations``: one red pixel, as ``b64_json``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        payload = json.dumps({"data": [{"b64_json": base64.b64encode(_PIXEL).decode()}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@cache
def _images_api() -> str:
    """The images API's base URL; it serves until this process ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImagesApi)
    threading.Thread(target=server.serve_forever, name="fuzz images API", daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


@dataclass
class Finding:
    check: str
    title: str
    message: str
    reproduce: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.title}\n{self.message[:1500]}\n{self.reproduce[:1500]}"


@dataclass
class Report:
    statuses: Counter[int] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)  # requests sent in each phase
    seconds: dict[str, float] = field(default_factory=dict)  # how long each phase ran
    # requests made by following a link, by "<operationId>.<link>" and the status they got
    followed: Counter[tuple[str, int]] = field(default_factory=Counter)
    network_errors: int = 0
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    engine_errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.network_errors

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def add(self, finding: Finding, operation: str) -> None:
        self.findings.setdefault((operation, finding.check, finding.title), finding)

    def __str__(self) -> str:
        return self.summary() + "\nlinks followed: " + str(dict(sorted(self.followed.items())))

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.server_errors} 5xx, {self.network_errors} without an answer, "
            f"{len(self.findings)} distinct findings; statuses {dict(sorted(self.statuses.items()))}; "
            f"by phase {dict(self.phases)} in {self._phase_seconds()} s"
        )

    def _phase_seconds(self) -> dict[str, float]:
        return {phase: round(seconds, 1) for phase, seconds in self.seconds.items() if phase in self.phases}

    def problems(self) -> str:
        return "\n\n".join([*map(str, self.findings.values()), *self.engine_errors])


def run(
    server: LiveServer, *, seed: int, max_examples: int, coverage: bool = True, report: Report | None = None
) -> Report:
    """One schemathesis run: the coverage phase (each constraint of the document at its bounds, and broken),
    the fuzzing phase (``max_examples`` requests per operation, valid and not) and the stateful phase
    (sequences along the links, 10 x ``max_examples``); the examples phase is off, as the document has next
    to no examples. Every check runs but positive_data_acceptance: the document says what the server accepts
    whatever its model and configuration are, and what depends on them or on stored state (a model without
    image input, a tool listed twice, a cancel of a finished run, a float 2.0 where an integer is due, which
    JSON Schema cannot tell from 2) is a 400 that this check would count as a failure. The coverage phase
    sends the same requests whatever the seed: ``coverage=False`` leaves it out of later runs."""
    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            "headers": {"x-goog-api-key": KEY},
            "base-url": server.url,
            "max-redirects": 0,  # the server never redirects; a redirect must not lead the fuzzer elsewhere
            "request-timeout": 15,
            "workers": 1,
            "generation": {"max-examples": max_examples, "deterministic": True, "mode": "all"},
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": coverage},
                "stateful": {"generation": {"max-examples": 10 * max_examples}},
            },
        }
    )
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json", config=config)
    schema.hook("map_case")(_served_model)
    _previous_is_an_interaction(schema)
    report = report or Report()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            report.phases[event.phase.value] += len(event.recorder.interactions)
            _record(report, event.recorder)
        elif isinstance(event, events.PhaseStarted):
            report.seconds[event.phase.name.value] = report.seconds.get(event.phase.name.value, 0) - event.timestamp
        elif isinstance(event, events.PhaseFinished):
            report.seconds[event.phase.name.value] += event.timestamp
        elif isinstance(event, events.NonFatalError | events.FatalError):
            report.engine_errors.append(repr(event))
    return report


def _served_model(context: Any, case: Any) -> Any:
    """Names the served model (or agent) in create requests: a generated name is never served, so every request
    would stop at a 404 before its other fields are read; and the one API version. Only a generated name is
    replaced, never a generated wrong value (a number, an empty string, none at all), so an invalid request
    stays invalid."""
    version = (case.path_parameters or {}).get("version")
    if isinstance(version, str) and _VERSION.fullmatch(version):
        # Every valid version names the same API, and the same interactions: a delete under a generated one
        # (v864423389) would leave schemathesis taking the interaction for one that vanished under v1beta.
        case.path_parameters["version"] = "v1beta"
    body = case.body
    if case.operation.label == "POST /{version}/interactions" and isinstance(body, dict):
        for field, served in (("model", PAINTER if _asks_for_images(body) else MODEL), ("agent", AGENT)):
            if isinstance(body.get(field), str) and body[field]:
                body[field] = served
    return case


def _asks_for_images(body: dict[str, Any]) -> bool:
    modalities = body.get("response_modalities")
    formats = body.get("response_format")
    formats = formats if isinstance(formats, list) else [formats]
    return (isinstance(modalities, list) and "image" in modalities) or any(
        isinstance(f, dict) and f.get("type") == "image" for f in formats
    )


def _previous_is_an_interaction(schema: Any) -> None:
    """Schemathesis guesses from its name that previous_interaction_id refers to a 'PreviousInteraction',
    which no operation returns, and so judges create unfit to start a sequence: the stateful phase would
    start every sequence from a cancel of a made-up id. It refers to an Interaction."""
    graph = schema.analysis.dependency_graph
    interaction = next(
        out.resource for node in graph.operations.values() for out in node.outputs if out.resource.name == "Interaction"
    )
    for slot in graph.operations["POST /{version}/interactions"].inputs:
        if slot.parameter_name == "previous_interaction_id":
            slot.resource = interaction


def _record(report: Report, recorder: ScenarioRecorder) -> None:
    for case_id, interaction in recorder.interactions.items():
        response = interaction.response
        if response is None:
            report.network_errors += 1
            continue
        report.statuses[response.status_code] += 1
        node = recorder.cases.get(case_id)
        if node is not None and node.transition is not None:
            report.followed[(_link(node.transition.id), response.status_code)] += 1
        problem = _error_shape(response.status_code, response.headers, response.content)
        if problem:
            report.add(Finding("error_shape", problem, response.content[:500].decode(errors="replace"), ""), "")
    for checks in recorder.checks.values():
        for check in checks:
            info = check.failure_info
            if info is not None:
                finding = Finding(check.name, info.failure.title, str(info.failure.message), info.code_sample)
                report.add(finding, recorder.label)


def _link(transition: str) -> str:
    """'POST /{version}/interactions -> [200] get -> GET /{version}/interactions/{id}' -> 'createInteraction.get'"""
    source, rest = transition.split(" -> [", 1)
    return f"{_OPERATION_IDS.get(source, source)}.{rest.split('] ', 1)[1].split(' -> ', 1)[0]}"


_OPERATION_IDS = {
    "POST /{version}/interactions": "createInteraction",
    "GET /{version}/interactions/{id}": "getInteraction",
    "POST /{version}/interactions/{id}/cancel": "cancelInteraction",
    "DELETE /{version}/interactions/{id}": "deleteInteraction",
}


def _error_shape(status: int, headers: dict[str, list[str]], content: bytes) -> str | None:
    """Every error is the API's JSON error: {"error": {"code": <the HTTP status>, "message", "status"}}."""
    if status < 400:
        return None
    if not headers.get("content-type", [""])[0].startswith("application/json"):
        return f"a {status} that is not JSON"
    try:
        error = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        return f"a {status} whose body is not the error shape"
    if not (
        isinstance(error, dict)
        and set(error) == {"code", "message", "status"}
        and error["code"] == status
        and isinstance(error["message"], str)
        and isinstance(error["status"], str)
    ):
        return f"a {status} whose body is not the error shape"
    return None
