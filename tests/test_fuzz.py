"""Schemathesis against the live server's /openapi.json, a bounded and reproducible run (bench/fuzz.py runs a
long one): requests generated from the document, valid and not, alone and in the sequences its links
describe (create, get, stream, cancel, delete, continue with previous_interaction_id)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fuzzing import Report, fuzz_server, run
from live import LiveServer

# A fixed seed and derandomised generation: the same requests every time (~6,000, ~30 s on two shared cores).
SEED = 14
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Report, LiveServer]]:
    server = fuzz_server(tmp_path_factory.mktemp("fuzz")).start()
    try:
        yield run(server, seed=SEED, max_examples=MAX_EXAMPLES), server
    finally:
        server.stop()


def test_every_check_passes(fuzzed: tuple[Report, LiveServer]) -> None:
    """No 5xx, every error in the API's error shape, every answer as the document says (status code, content
    type, headers, schema, each SSE frame), invalid input refused with a 4xx, auth enforced, a deleted
    interaction gone, a created one there."""
    report, _ = fuzzed
    assert not report.findings and not report.engine_errors, report.summary() + "\n\n" + report.problems()


def test_the_run_reached_the_server(fuzzed: tuple[Report, LiveServer]) -> None:
    """A run that passes because nothing got through proves nothing: it made interactions and streamed them."""
    report, server = fuzzed
    assert report.server_errors == 0 and report.network_errors == 0, report.summary()
    assert report.requests > 1000, report.summary()
    assert report.statuses[200] > 100, report.summary()
    followed = {link for (link, status), _ in report.followed.items() if status == 200}
    # create, then read it (GET, as JSON or as a stream), cancel (a finished run: a 400), delete, continue
    # (previous_interaction_id). Which of the two reads gets valid query parameters is the generator's draw: with
    # the whole suite collected, every JSON GET it drew carried an unknown or contradictory parameter (a 400).
    assert {"createInteraction.delete", "createInteraction.continue"} <= followed, str(report)
    assert followed & {"createInteraction.get", "createInteraction.stream"}, str(report)
    assert report.followed[("createInteraction.cancel", 400)] > 0, str(report)
    assert not any("Traceback" in line for line in server.log), "".join(server.log)
