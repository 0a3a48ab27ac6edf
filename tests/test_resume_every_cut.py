"""Acceptance (issue 15), through google-genai, on SQLite and on PostgreSQL: a stream cut after k events, for
every k, and resumed with the last event_id it saw, joins into the uninterrupted stream exactly.

The run is a scripted one with every kind of step: a thought with summaries and a signature, text deltas, a
google_search round that the server really runs (on the test corpus), text made from its result and a function
call with its arguments in fragments. The script pauses between its events (``sleep_ms``), so the run is still
going when a background stream is cut early: the resume attaches to a live run. The test itself never sleeps.

Three things are checked, each for every cut point:

- background (``background=True, stream=True``): closing the SDK's stream only stops that response; the joined
  stream equals the uninterrupted one: same event types, event ids and payloads, up to what differs between two
  interactions (the id, timestamps, the thought signature, which signs the id); at least one cut must find the
  run still in progress (early ones do: the script's pauses outlast a GET);
- foreground (``stream=True``): the client going away cancels the run by design (docs/architecture.md,
  "Cancellation and disconnects"). The server notices the disconnect a little after the k-th event, so the
  joined stream is the uninterrupted one up to some cut j >= k, then a well-formed cancelled ending: the
  step left open at j closed (a thought first gets its signature delta, as any thought does when it ends), then
  ``interaction.completed`` with the interaction as created but ``cancelled``, with the usage of the model
  rounds that had ended: none before the first round ended, then one same value for the first round (with the
  search in ``grounding_tool_count`` once its result is in the log), or the whole run's. If the run ended
  before the disconnect was noticed, it is the whole uninterrupted stream;
- after a run has finished, GET's stream resumed from every event id is the stored log from there on.

In every case the joined stream equals, payloads included and nothing normalised, the interaction's stored log
(GET ``?stream=true``), its event ids are 1, 2, 3, ... with no gap and no repeat, and GET's status is the one
its ``interaction.completed`` carries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai

from live import FIXTURES, LiveServer
from pg import store_section
from resuming import check_ids, dump, normal

MODEL = "gemini-3-flash-preview"
PAUSE = {"sleep_ms": 10}
SCRIPT = json.dumps(
    {
        "rounds": [
            [
                {"thought": "Plan: look it up."},
                PAUSE,
                {"thought": " Then answer."},
                PAUSE,
                {"text": "Let me search."},
                PAUSE,
                {"call": {"name": "google_search", "arguments": {"queries": ["mountain"]}, "id": "search01"}},
            ],
            [
                {"text": "Found"},
                PAUSE,
                {"text_from_result": " {result}"},
                PAUSE,
                {"call": {"name": "lookup", "arguments": {"q": "x", "n": 2}, "chunks": 2, "id": "lookup01"}},
            ],
        ]
    }
)
TOOLS: list[Any] = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}, {"type": "google_search"}]
CONFIG: Any = {"thinking_summaries": "auto"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with store_section(request.param) as store:
        server = LiveServer(
            tmp_path_factory.mktemp(request.param),
            {"store": store, f"models.{MODEL}": {"backend": "scripted", "inline": True}},
        )
        server.index(FIXTURES / "corpus")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def client(live: LiveServer) -> genai.Client:
    return genai.Client(api_key="test-key", http_options={"base_url": live.url})


@pytest.fixture(scope="module")
def uninterrupted(client: genai.Client) -> list[dict[str, Any]]:
    events = [dump(e) for e in start(client, background=False)]
    check_ids(events)
    assert events[-1]["event_type"] == "interaction.completed"
    assert events[-1]["interaction"]["status"] == "requires_action"
    kinds = {e["delta"]["type"] for e in events if e["event_type"] == "step.delta"}
    assert kinds >= {"thought_summary", "thought_signature", "text", "google_search_result", "arguments_delta"}
    return events


def start(client: genai.Client, *, background: bool) -> Any:
    return client.interactions.create(
        model=MODEL, input=SCRIPT, tools=TOOLS, generation_config=CONFIG, stream=True, background=background
    )


def cut(client: genai.Client, k: int, *, background: bool) -> tuple[str, bool, list[dict[str, Any]]]:
    """Read k events of a new stream, drop the connection, resume after the last one seen: the interaction's
    id, whether it was still running just before the resume, and the joined list."""
    stream = start(client, background=background)
    head = []
    for event in stream:
        head.append(dump(event))
        if len(head) == k:
            break
    stream.close()
    assert len(head) == k
    interaction_id = head[0]["interaction"]["id"]
    running = client.interactions.get(interaction_id).status == "in_progress"
    tail = client.interactions.get(interaction_id, stream=True, last_event_id=head[-1]["event_id"])
    return interaction_id, running, head + [dump(e) for e in tail]


def stored_log(client: genai.Client, interaction_id: str) -> list[dict[str, Any]]:
    return [dump(e) for e in client.interactions.get(interaction_id, stream=True)]


def check_log(client: genai.Client, interaction_id: str, joined: list[dict[str, Any]]) -> None:
    check_ids(joined)
    assert stored_log(client, interaction_id) == joined, "the joined stream is not the stored log"
    status = client.interactions.get(interaction_id).status
    assert status == joined[-1]["interaction"]["status"], "GET disagrees with the stream's end"


def cancelled_ending(full: list[dict[str, Any]], j: int) -> list[dict[str, Any]]:
    """What a run cut after full[:j] by its client going away ends with: the step left open, if any, is closed
    (a thought gets its signature first, unless it has it already), then interaction.completed with the
    interaction as created, cancelled."""
    started = [e for e in full[:j] if e["event_type"] == "step.start"]
    stopped = {e["index"] for e in full[:j] if e["event_type"] == "step.stop"}
    ending: list[dict[str, Any]] = []
    if started and started[-1]["index"] not in stopped:
        index = started[-1]["index"]
        signed = any(
            e.get("index") == index and e.get("delta", {}).get("type") == "thought_signature" for e in full[:j]
        )
        if started[-1]["step"]["type"] == "thought" and not signed:
            signature = {"signature": "signature", "type": "thought_signature"}
            ending.append({"delta": signature, "index": index, "event_type": "step.delta"})
        ending.append({"index": index, "event_type": "step.stop"})
    ending.append(
        {"interaction": {**full[0]["interaction"], "status": "cancelled"}, "event_type": "interaction.completed"}
    )
    for n, event in enumerate(ending, start=j + 1):
        event["event_id"] = str(n)
    return [normal(e) for e in ending]


def test_a_background_stream_cut_after_every_k_events_resumes_exactly(
    client: genai.Client, uninterrupted: list[dict[str, Any]]
) -> None:
    expected = [normal(e) for e in uninterrupted]
    live_cuts = 0
    for k in range(1, len(uninterrupted) + 1):
        interaction_id, running, joined = cut(client, k, background=True)
        live_cuts += running
        assert [normal(e) for e in joined] == expected, f"cut after {k} events"
        check_log(client, interaction_id, joined)
    # The script's pauses keep early cuts inside the run; a machine too slow for even one would test less.
    assert live_cuts >= 1, "no cut happened while the run was live"


def test_a_foreground_stream_cut_after_every_k_events_ends_cancelled_right_there(
    client: genai.Client, uninterrupted: list[dict[str, Any]]
) -> None:
    expected = [normal(e) for e in uninterrupted]
    searched = next(n for n, e in enumerate(expected) if e.get("step", {}).get("type") == "google_search_call")
    partial_usages = []
    for k in range(1, len(uninterrupted) + 1):
        interaction_id, _, joined = cut(client, k, background=False)
        got = [normal(e) for e in joined]
        check_log(client, interaction_id, joined)
        assert got[:k] == expected[:k], f"cut after {k} events"
        if got == expected:  # the run ended before the server heard the client leave
            continue
        usage = got[-1]["interaction"].pop("usage", None)
        cuts = [j for j in range(k, len(got)) if got[:j] == expected[:j] and got[j:] == cancelled_ending(expected, j)]
        assert cuts, f"cut after {k} events: not the uninterrupted stream up to a point, then a cancelled ending"
        # The usage of the model rounds that ended before the cancel: none before the first ended (it ends
        # with the search call), then the first round's, or both rounds' (the whole run's). A search counts in
        # grounding_tool_count once it has its result.
        if usage is not None and usage != expected[-1]["interaction"]["usage"]:
            assert cuts[0] > searched, f"cut after {k} events: usage before any model round ended"
            grounding = usage.pop("grounding_tool_count", None)
            found = any(e.get("step", {}).get("type") == "google_search_result" for e in got)
            assert grounding == ([{"count": 1, "type": "google_search"}] if found else None), f"cut after {k}"
            partial_usages.append(usage)
    assert all(usage == partial_usages[0] for usage in partial_usages), json.dumps(partial_usages)


def test_a_finished_run_resumed_from_every_event_id_is_its_stored_log(
    client: genai.Client, uninterrupted: list[dict[str, Any]]
) -> None:
    interaction_id = uninterrupted[0]["interaction"]["id"]
    log = stored_log(client, interaction_id)
    assert log == uninterrupted
    for position, event in enumerate(log):
        tail = client.interactions.get(interaction_id, stream=True, last_event_id=event["event_id"])
        assert [dump(e) for e in tail] == log[position + 1 :], f"resume after {event['event_id']}"
