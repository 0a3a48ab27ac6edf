"""Deep Research agents through google-genai, with the seed's request shape: the agent thinks with the scripted
backend (a test double for the model only: its scripts give the plan, the notes and the report); its searches of
the local index and its reads of the documents are real. Citations must point only at documents the run read,
and a note whose quote is not in its document is dropped."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai._interactions import BadRequestError, NotFoundError

from live import FIXTURES, LiveServer
from protocol import check_stream
from resuming import (
    CrashingServer,
    Follower,
    ResumingReader,
    check_ids,
    model_text,
    normal_steps,
    streamed_text,
    wait_for,
)

AGENT = "deep-research-preview-04-2026"
QUESTION = "Research the mountains of Europe."
ELBRUS = "Mount Elbrus is the highest and most prominent peak in Russia and in Europe."
ASCENT = "The first recorded ascent was in 1786 by Jacques Balmat and Michel-Gabriel Paccard."
REPORT = (
    "# Europe's mountains\n\nMount Elbrus is the highest peak in Europe [1]. Mont Blanc was first climbed in 1786 "
    "[2]. Its summit is made of cheese [3].\n"
)


def rule(events: list[dict[str, Any]], **when: Any) -> dict[str, Any]:
    return {"when": when, "events": events}


def answer(value: Any) -> list[dict[str, Any]]:
    return [{"text": json.dumps(value)}, {"usage": {"input_tokens": 100, "output_tokens": 10}}]


def note(source: int, claim: str, quote: str) -> dict[str, Any]:
    return {"source": source, "claim": claim, "quote": quote}


PLAN = {"questions": ["Mount Elbrus height", "Mont Blanc first ascent"]}
ELBRUS_NOTES = {
    "notes": [
        note(1, "Elbrus is the highest peak in Europe", ELBRUS),
        note(1, "Its summit is made of cheese", "Elbrus is made of cheese."),  # in no document
    ]
}
MONT_BLANC_NOTES = {"notes": [note(1, "Mont Blanc was first climbed in 1786", ASCENT)]}
NOTES = "You take research notes"
EDITED = {"questions": [*PLAN["questions"], "Elbrus first ascent"], "approved": False}
SCRIPT = {
    "rules": [
        rule(
            answer({**EDITED, "approved": True}), system_contains="You agree a research plan", input_contains="go ahead"
        ),
        rule(answer(EDITED), system_contains="You agree a research plan"),
        rule(answer(PLAN), system_contains="You plan research"),
        rule(answer(MONT_BLANC_NOTES), system_contains=NOTES, input_contains="Question: Mont Blanc first ascent"),
        rule(answer(ELBRUS_NOTES), system_contains=NOTES),
        rule(answer({"questions": []}), system_contains="You review research notes"),
        rule([{"text": REPORT}], system_contains="You write the research report"),
    ]
}
SLOW = {"rules": [rule([{"hang": True}], system_contains="You take research notes"), *SCRIPT["rules"]]}


def agent_server(workdir: Path) -> LiveServer:
    (workdir / "script.json").write_text(json.dumps(SCRIPT))
    (workdir / "slow.json").write_text(json.dumps(SLOW))
    sections = {
        "models.thinker": {"backend": "scripted", "script": workdir / "script.json"},
        "models.slow": {"backend": "scripted", "script": workdir / "slow.json"},
        f"agents.{AGENT}": {"model": "thinker", "reads_per_search": 1},
        "agents.slow-researcher": {"model": "slow", "reads_per_search": 1},
        "agents.frugal": {"model": "thinker", "max_tokens": 150},
        "agents.slow-hasty": {"model": "slow", "reads_per_search": 1, "time_budget_seconds": 3},
        "tools.code_execution": {"enabled": False},
        "tools.url_context": {"allow_networks": ["127.0.0.1/32"]},
    }
    server = LiveServer(workdir, sections)
    server.index(FIXTURES / "corpus")
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = agent_server(tmp_path_factory.mktemp("agents")).start()
    yield live
    live.stop()


def client_for(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def seed_request(**extra: Any) -> dict[str, Any]:
    body = {"agent": AGENT, "input": QUESTION, "background": True,
            "agent_config": {"type": "deep-research", "thinking_summaries": "auto"}}  # fmt: skip
    return {**body, **extra}


def read_urls(steps: list[dict[str, Any]]) -> set[str]:
    return {
        page["url"]
        for step in steps
        if step["type"] == "url_context_result"
        for page in step.get("result") or []
        if page["status"] == "success"
    }


def test_seed_request_streams_research_and_a_cited_report(server: LiveServer) -> None:
    client = client_for(server)
    events = [
        e.model_dump(mode="json", exclude_none=True, by_alias=True)
        for e in client.interactions.create(stream=True, **seed_request())
    ]
    result = check_stream(events)
    assert events[0]["interaction"]["agent"] == AGENT and "model" not in events[0]["interaction"]
    assert events[-1]["interaction"]["agent"] == AGENT and result["status"] == "completed"
    kinds = [s["type"] for s in result["steps"]]
    research = ["thought", "google_search_call", "google_search_result", "thought", "url_context_call",
                "url_context_result", "thought"]  # fmt: skip
    assert kinds == ["thought", *research, *research, "thought", "model_output"]
    summaries = [s["summary"] for s in result["steps"] if s["type"] == "thought"]
    assert summaries[0].startswith("**Planning the research**") and "2. Mont Blanc first ascent" in summaries[0]
    assert summaries[1] == "**Searching**\n\nSearching: Mount Elbrus height"
    assert summaries[2] == "**Reading**\n\nReading: Mount Elbrus"
    assert "Its summit is made of cheese" not in summaries[3]  # its quote is in no document read: dropped
    assert summaries[-1].startswith("**Writing the report**\n\nWriting the report from 2 notes on 2 sources")
    thoughts = [s for s in result["steps"] if s["type"] == "thought"]
    assert all(s["deltas"][-1]["type"] == "thought_signature" for s in thoughts)

    interaction = client.interactions.get(events[0]["interaction"]["id"]).model_dump(mode="json", exclude_none=True)
    assert interaction["agent"] == AGENT and "model" not in interaction
    assert interaction["agent_config"] == {"type": "deep-research", "thinking_summaries": "auto"}
    report = interaction["steps"][-1]["content"][0]
    assert report["text"] == REPORT
    read = read_urls(interaction["steps"])
    cited = [a["url"] for a in report["annotations"]]
    assert [u.rsplit("/", 1)[1] for u in cited] == ["elbrus.md", "mont-blanc.md"]  # [3] cites no source: left out
    assert set(cited) <= read
    text = report["text"].encode()
    spans = [text[a["start_index"] : a["end_index"]].decode() for a in report["annotations"]]
    assert spans == ["Mount Elbrus is the highest peak in Europe [1]", "Mont Blanc was first climbed in 1786 [2]"]
    usage = interaction["usage"]
    # plan, two notes and the review report 100 input tokens each; the report its prompt's words: every call counts
    assert usage["total_input_tokens"] > 4 * 100
    assert usage["total_output_tokens"] == 4 * 10 + len(REPORT.split())
    assert [g["type"] for g in usage["grounding_tool_count"]] == ["google_search"]


def test_background_create_then_poll(server: LiveServer) -> None:
    client = client_for(server)
    created = client.interactions.create(**seed_request(agent_config={"type": "deep-research"}))
    assert created.status in ("in_progress", "completed") and created.agent == AGENT
    wait_for(lambda: client.interactions.get(created.id).status != "in_progress", seconds=30)
    done = client.interactions.get(created.id)
    assert done.status == "completed" and done.agent == AGENT
    assert all(not s.summary for s in done.steps if s.type == "thought")  # thinking_summaries not "auto"
    assert done.steps[-1].content[0].text == REPORT


def test_token_budget_ends_budget_exceeded(server: LiveServer) -> None:
    client = client_for(server)
    created = client.interactions.create(**seed_request(agent="frugal", agent_config=None))
    wait_for(lambda: client.interactions.get(created.id).status == "budget_exceeded", seconds=30)
    done = client.interactions.get(created.id)
    # 110 tokens for the plan, 220 with the first notes: over 150, it stops before it says what it learned
    assert [s.type for s in done.steps][-3:] == ["thought", "url_context_call", "url_context_result"]
    assert done.usage.total_input_tokens == 200


def test_cancel_a_running_agent(server: LiveServer) -> None:
    client = client_for(server)
    created = client.interactions.create(**seed_request(agent="slow-researcher"))
    reader = Follower(server, created.id)
    wait_for(lambda: any(e.get("step", {}).get("type") == "url_context_result" for e in reader.events), seconds=30)
    cancelled = client.interactions.cancel(created.id)
    reader.join(10)
    assert cancelled.status == "cancelled" and cancelled.agent == "slow-researcher"
    assert reader.done and reader.events[-1]["event_type"] == "interaction.completed"
    assert client.interactions.get(created.id).status == "cancelled"


REFUSALS = [
    ({"model": "thinker"}, 400, "mutually exclusive"),
    ({"generation_config": {"temperature": 0.5}}, 400, "'generation_config' cannot be combined with 'agent'"),
    ({"cached_content": "cachedContents/1"}, 400, "'cached_content' cannot be combined"),
    ({"background": False}, 400, "set 'background': true"),
    ({"background": None}, 400, "set 'background': true"),
    ({"agent": "no-such-agent"}, 404, "agents/no-such-agent is not found"),
    ({"agent_config": {"type": "dynamic"}}, 400, "'agent_config' of type 'dynamic' (dynamic agents) is not"),
    ({"agent_config": {"type": "antigravity", "model": "x"}}, 400, "of type 'antigravity'"),
    ({"agent_config": {"type": "code-mender"}}, 400, "of type 'code-mender'"),
    ({"agent_config": {"type": "bogus"}}, 400, "'agent_config.type' 'bogus' is unknown"),
    ({"agent_config": {"type": "deep-research", "thinking_summaries": "yes"}}, 400, "thinking_summaries"),
    ({"agent_config": {"type": "deep-research", "visualization": "auto"}}, 400, "'auto' needs charts, unavailable"),
    ({"agent_config": {"type": "deep-research", "visualization": "always"}}, 400, "'agent_config.visualization'"),
    ({"agent_config": {"type": "deep-research", "depth": 3}}, 400, "'agent_config.depth' is not a field"),
    ({"tools": [{"type": "google_search"}]}, 400, "'tools' with an agent"),
]


@pytest.mark.parametrize("change, status, message", REFUSALS)
def test_refusals(server: LiveServer, change: dict[str, Any], status: int, message: str) -> None:
    body = {k: v for k, v in seed_request(**change).items() if v is not None}
    with server.http() as http:
        response = http.post("/v1beta/interactions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and message in error["message"]


def test_model_with_agent_config_is_refused(server: LiveServer) -> None:
    with server.http() as http:
        body = {"model": "thinker", "input": "hi", "agent_config": {"type": "deep-research"}}
        response = http.post("/v1beta/interactions", json=body)
    assert response.status_code == 400 and "'model' cannot be combined with 'agent_config'" in response.text


def test_sdk_refuses_unknown_agent_with_not_found(server: LiveServer) -> None:
    client = client_for(server)
    with pytest.raises(NotFoundError):
        client.interactions.create(**seed_request(agent="no-such-agent"))
    with pytest.raises(BadRequestError):
        client.interactions.create(**seed_request(background=False))


HALF = REPORT.index("Mont Blanc")
CUT_IN_RESEARCH = {"rules": [rule([{"hang": True}], system_contains=NOTES), *SCRIPT["rules"]]}
CUT_IN_REPORT = {"rules": [rule([{"text": REPORT[:HALF]}, {"hang": True}, {"text": REPORT[HALF:]}],
                                system_contains="You write the research report"), *SCRIPT["rules"]]}  # fmt: skip
AFTER_CUT = {"rules": [rule([{"text": REPORT[:HALF]}, {"text": REPORT[HALF:]}],
                            system_contains="You write the research report"), *SCRIPT["rules"]]}  # fmt: skip


def _no_ids(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k not in ("id", "call_id")} for s in normal_steps(steps)]


def _in_research(events: list[dict[str, Any]]) -> bool:
    return any(e.get("step", {}).get("type") == "url_context_result" for e in events)


def _in_report(events: list[dict[str, Any]]) -> bool:
    return any(e["event_type"] == "step.delta" and e["delta"]["type"] == "text" for e in events)


def _through_crashes(tmp_path: Path, first_life: Any, lives: list[tuple[Any, Any]]) -> tuple[Any, Any, Any]:
    """The slow researcher's run, next to an uninterrupted reference run: killed at each ``cut`` with the model's
    script changed to the next life's; (the resuming reader, the run as stored, the reference as stored)."""
    crashing = CrashingServer(agent_server(tmp_path))
    (tmp_path / "slow.json").write_text(json.dumps(first_life))
    crashing.start()
    try:
        client = client_for(crashing.server)
        reference = client.interactions.create(**seed_request())
        created = client.interactions.create(**seed_request(agent="slow-researcher"))
        reader = ResumingReader(crashing, created.id)
        reader.start()
        for cut, next_life in lives:
            wait_for(lambda: cut(reader.events), what="the run to reach the cut")  # noqa: B023 (waited on here)
            crashing.kill()
            (tmp_path / "slow.json").write_text(json.dumps(next_life))  # the model answers in the next life
            crashing.start()
        reader.join(60)
        wait_for(lambda: client.interactions.get(reference.id).status != "in_progress")
        got = client.interactions.get(created.id).model_dump(mode="json", exclude_none=True)
        want = client.interactions.get(reference.id).model_dump(mode="json", exclude_none=True)
    finally:
        crashing.stop()
    assert reader.done and reader.failure is None and not reader.unexpected, (reader.failure, reader.unexpected)
    assert reader.connections == len(lives) + 1
    check_ids(reader.events)
    return reader, got, want


@pytest.mark.parametrize("first_life, cut", [(CUT_IN_RESEARCH, _in_research), (CUT_IN_REPORT, _in_report)],
                         ids=["mid-research", "mid-report"])  # fmt: skip
def test_a_run_killed_mid_research_continues_after_restart(tmp_path: Path, first_life: Any, cut: Any) -> None:
    """SIGKILL while the note taker (or the report) hangs; after the restart the run goes on from its log: what
    was searched and read is not done again, and the run ends as an uninterrupted one does."""
    reader, got, want = _through_crashes(tmp_path, first_life, [(cut, AFTER_CUT)])
    assert got["status"] == want["status"] == "completed"
    assert [s["type"] for s in got["steps"]] == [s["type"] for s in want["steps"]]
    assert _no_ids(got["steps"])[:-1] == _no_ids(want["steps"])[:-1]  # thoughts, searches, reads
    assert got["steps"][-1] == want["steps"][-1]  # the report, its citations included
    assert streamed_text(reader.events) == model_text(got["steps"]) == [REPORT]
    cited = {a["url"] for a in got["steps"][-1]["content"][0]["annotations"]}
    assert len(cited) == 2 and cited <= read_urls(got["steps"])
    calls = [e["step"]["type"] for e in reader.events if e["event_type"] == "step.start"]
    assert calls.count("google_search_call") == calls.count("url_context_call") == 2  # none done again
    assert got["usage"]["total_input_tokens"] >= want["usage"]["total_input_tokens"]


def test_a_run_killed_twice_continues_from_both_lives(tmp_path: Path) -> None:
    """SIGKILL while the notes are taken, then again, in the next life, while the report is written: the third
    life goes on from a log that holds a takeover already, and the run ends as an uninterrupted one does."""
    lives = [(_in_research, CUT_IN_REPORT), (_in_report, AFTER_CUT)]
    reader, got, want = _through_crashes(tmp_path, CUT_IN_RESEARCH, lives)
    assert got["status"] == "completed"
    assert _no_ids(got["steps"])[:-1] == _no_ids(want["steps"])[:-1] and got["steps"][-1] == want["steps"][-1]
    assert streamed_text(reader.events) == model_text(got["steps"]) == [REPORT]
    calls = [e["step"]["type"] for e in reader.events if e["event_type"] == "step.start"]
    assert calls.count("google_search_call") == calls.count("url_context_call") == 2  # none done again


def test_a_planning_turn_killed_continues_on_its_chain(tmp_path: Path) -> None:
    """A collaborative-planning reply whose run is killed while the model weighs the reply: after the restart the
    run, taken over, still finds the proposed plan in its chain, agrees it and researches it."""
    crashing = CrashingServer(agent_server(tmp_path))
    (tmp_path / "slow.json").write_text(json.dumps(SCRIPT))
    crashing.start()
    config = {"type": "deep-research", "thinking_summaries": "auto", "collaborative_planning": True}
    try:
        client = client_for(crashing.server)
        proposed = client.interactions.create(**seed_request(agent="slow-researcher", agent_config=config))
        wait_for(lambda: client.interactions.get(proposed.id).status == "requires_action")
        weighing = {"rules": [rule([{"hang": True}], system_contains="You agree a research plan"), *SCRIPT["rules"]]}
        (tmp_path / "slow.json").write_text(json.dumps(weighing))
        reply = client.interactions.create(**seed_request(agent="slow-researcher", agent_config=config,
                                                          input="Looks good, go ahead."),
                                           previous_interaction_id=proposed.id)  # fmt: skip
        reader = Follower(crashing.server, reply.id)
        wait_for(lambda: any(e["event_type"] == "interaction.status_update" for e in reader.events))
        crashing.kill()
        (tmp_path / "slow.json").write_text(json.dumps(SCRIPT))
        crashing.start()
        wait_for(lambda: client.interactions.get(reply.id).status != "in_progress")
        done = client.interactions.get(reply.id)
    finally:
        crashing.stop()
    assert done.status == "completed"
    assert done.steps[0].summary[0].text.startswith("**The plan is agreed**")
    assert [s.arguments.queries[0] for s in done.steps if s.type == "google_search_call"] == EDITED["questions"]
    assert done.steps[-1].content[0].text == REPORT


def test_the_time_budget_counts_from_creation_across_a_crash(tmp_path: Path) -> None:
    """The research's time is counted from the interaction's creation: a run taken over after its budget ran
    out (the server was down) ends budget_exceeded, although the next life's model would answer at once."""
    crashing = CrashingServer(agent_server(tmp_path))
    (tmp_path / "slow.json").write_text(json.dumps(CUT_IN_RESEARCH))
    crashing.start()
    try:
        client = client_for(crashing.server)
        created = client.interactions.create(**seed_request(agent="slow-hasty"))
        reader = Follower(crashing.server, created.id)
        wait_for(lambda: _in_research(reader.events), what="the research to start")
        crashing.kill()
        born = datetime.fromisoformat(created.created).timestamp()
        wait_for(lambda: time.time() > born + 3.5, what="the budget to pass while the server is down")
        (tmp_path / "slow.json").write_text(json.dumps(AFTER_CUT))
        crashing.start()
        wait_for(lambda: client.interactions.get(created.id).status != "in_progress")
        done = client.interactions.get(created.id)
    finally:
        crashing.stop()
    assert done.status == "budget_exceeded"
    assert "model_output" not in [s.type for s in done.steps]


def test_collaborative_planning_waits_for_the_plan_to_be_approved(server: LiveServer) -> None:
    """The plan is the first turn's answer (requires_action); a reply asking for a change gets the revised plan,
    again requires_action; an approval starts the research on the agreed plan."""
    client = client_for(server)
    config = {"type": "deep-research", "thinking_summaries": "auto", "collaborative_planning": True}

    def turn(text: str, previous: str | None = None) -> Any:
        created = client.interactions.create(**seed_request(input=text, agent_config=config),
                                             **({"previous_interaction_id": previous} if previous else {}))  # fmt: skip
        wait_for(lambda: client.interactions.get(created.id).status not in ("in_progress", "queued"))
        return client.interactions.get(created.id)

    proposed = turn(QUESTION)
    assert proposed.status == "requires_action" and proposed.agent == AGENT
    assert [s.type for s in proposed.steps] == ["thought", "thought", "model_output"]  # no search yet
    assert (
        "1. Mount Elbrus height\n2. Mont Blanc first ascent\n\nReply to approve" in proposed.steps[-1].content[0].text
    )
    revised = turn("Also find who first climbed Elbrus.", proposed.id)
    assert revised.status == "requires_action"
    assert [s.type for s in revised.steps] == ["thought", "thought", "model_output"]
    assert revised.steps[0].summary[0].text.startswith("**Revising the plan**")
    assert "3. Elbrus first ascent" in revised.steps[-1].content[0].text
    done = turn("Looks good, go ahead.", revised.id)
    assert done.status == "completed"
    kinds = [s.type for s in done.steps]
    assert kinds[0] == "thought" and done.steps[0].summary[0].text.startswith("**The plan is agreed**")
    assert "3. Elbrus first ascent" in done.steps[0].summary[0].text
    assert kinds.count("google_search_call") == 3 and kinds[-1] == "model_output"
    searched = [s.arguments.queries[0] for s in done.steps if s.type == "google_search_call"]
    assert searched == EDITED["questions"]
    assert done.steps[-1].content[0].text == REPORT


def test_reader_reads_index_documents_and_loopback_pages(tmp_path: Path) -> None:
    import asyncio

    from openinteractions.tools.net import AddressPolicy, SafeFetcher
    from openinteractions.tools.reader import DocumentReader
    from openinteractions.tools.search_index import LocalIndex
    from openinteractions.tools.url_context import UrlContext
    from pages import site

    index = LocalIndex(tmp_path / "search.db")
    index.add([FIXTURES / "corpus" / "elbrus.md"])
    web = UrlContext(SafeFetcher(AddressPolicy(["127.0.0.1/32"])), max_chars=1000)
    reader = DocumentReader(index, web, max_chars=1000)
    elbrus = (FIXTURES / "corpus" / "elbrus.md").resolve().as_uri()
    with site() as url:
        outcome = asyncio.run(reader.run({"urls": [elbrus, f"{url}/page", "file:///etc/passwd"]}))
    index.close()
    local, page, outside = outcome.result
    assert local["status"] == "success" and local["title"] == "Mount Elbrus" and ELBRUS in local["text"]
    assert page["status"] == "success" and "7341" in page["text"]
    assert outside == {"url": "file:///etc/passwd", "status": "error", "error": "not a document of the local index"}
    assert [s["url"] for s in outcome.sources or []] == [elbrus, f"{url}/page"]
