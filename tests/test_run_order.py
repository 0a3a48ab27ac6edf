"""A run sends its backend's request before it announces the interaction, and still logs the announcement
first and no step before the stored row (with store) is durable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openinteractions.backends.base import Finish, GenerationRequest, ModelEvent, TextChunk
from openinteractions.engine.recipe import RunRecipe
from openinteractions.engine.run import Job, Run
from openinteractions.engine.signatures import ThoughtSigner
from openinteractions.events.log import MemoryEventLog, split_frames
from openinteractions.store.base import FinalState, StoredInteraction


class _Backend:
    """Records when its request goes out; answers at once (``wait`` False) or after one loop step."""

    capabilities: Any = None

    def __init__(self, journal: list[str], log: MemoryEventLog, wait: bool) -> None:
        self.journal, self.log, self.wait = journal, log, wait

    def prepare(self, request: GenerationRequest) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[ModelEvent]:
        self.journal.append(f"request sent, {self.log.length('i1')} events logged")
        if self.wait:
            await asyncio.sleep(0)  # the upstream's answer comes in a later loop step
        yield TextChunk("hello")
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


class _Store:
    """Its insert lands only when the test says so."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.inserted: asyncio.Future[None] | None = None

    def insert(self, record: StoredInteraction) -> asyncio.Future[None]:
        self.journal.append("insert")
        self.inserted = asyncio.get_running_loop().create_future()
        return self.inserted

    def finish(self, interaction_id: str, final: FinalState, events: bytes) -> asyncio.Future[None]:
        self.journal.append(f"finish {final.status}")
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _run(journal: list[str], log: MemoryEventLog, store: _Store, wait: bool, stored: bool) -> Run:
    recipe = RunRecipe(
        interaction_id="i1",
        owner="o",
        model="m",
        route="m",
        store=stored,
        background=False,
        created_at=100.0,
        expires_at=200.0,
        previous_interaction_id=None,
        request={},
        echo={},
        input_steps=[],
        timeout=30.0,
        max_tool_rounds=8,
        tool_budget=120.0,
    )
    job = Job(recipe, _Backend(journal, log, wait), GenerationRequest(model="m", history=[]), [])  # type: ignore[arg-type]
    log.open("i1")
    return Run(job, log, store, ThoughtSigner(b"k" * 32), lambda: 150.0)  # type: ignore[arg-type]


def _types(log: MemoryEventLog) -> list[str]:
    frames = split_frames(log.contents("i1"))
    return [json.loads(f.split(b"data: ", 1)[1])["event_type"] for f in frames]


@pytest.mark.parametrize("wait", [True, False], ids=["answer later", "answer at once"])
def test_the_request_goes_out_before_the_announcement_which_stays_first(wait: bool) -> None:
    async def main() -> tuple[list[str], list[str]]:
        journal: list[str] = []
        log = MemoryEventLog(max_events=100, max_bytes=100_000)
        run = _run(journal, log, _Store(journal), wait, stored=False)
        await run.execute()
        return journal, _types(log)

    journal, types = asyncio.run(main())
    assert journal == ["request sent, 0 events logged"]
    assert types[:2] == ["interaction.created", "interaction.status_update"]
    assert types[2:] == ["step.start", "step.delta", "step.stop", "interaction.completed"]


def test_no_step_is_logged_before_the_row_is_stored() -> None:
    async def main() -> tuple[list[str], list[str], list[str]]:
        journal: list[str] = []
        log = MemoryEventLog(max_events=100, max_bytes=100_000)
        store = _Store(journal)
        run = _run(journal, log, store, wait=False, stored=True)
        task = asyncio.create_task(run.execute())
        while store.inserted is None:
            await asyncio.sleep(0)
        for _ in range(5):  # the backend has answered; the steps wait for the row
            await asyncio.sleep(0)
        before = _types(log)
        store.inserted.set_result(None)
        await task
        return journal, before, _types(log)

    journal, before, after = asyncio.run(main())
    assert journal == ["request sent, 0 events logged", "insert", "finish completed"]
    assert before == ["interaction.created", "interaction.status_update"]
    assert after[2:] == ["step.start", "step.delta", "step.stop", "interaction.completed"]


def test_a_run_cancelled_before_its_announcement_still_logs_it_first_and_stores_its_row() -> None:
    async def main() -> tuple[list[str], list[str]]:
        journal: list[str] = []
        log = MemoryEventLog(max_events=100, max_bytes=100_000)
        store = _Store(journal)
        run = _run(journal, log, store, wait=True, stored=True)
        run.task = asyncio.create_task(run.execute())
        await asyncio.sleep(0)  # the request is out; the announcement is scheduled but has not run
        run.task.cancel()
        while store.inserted is None:
            await asyncio.sleep(0)
        store.inserted.set_result(None)
        await run.finished.wait()
        return journal, _types(log)

    journal, types = asyncio.run(main())
    assert journal == ["request sent, 0 events logged", "insert", "finish cancelled"]
    assert types == ["interaction.created", "interaction.status_update", "interaction.completed"]


def test_continuing_a_run_whose_row_is_not_committed_yet_is_a_precondition_not_a_404(tmp_path: Any) -> None:
    """The created event can reach a client before the insert commits; a continuation sent at once must hear
    that the run is still going (400 FAILED_PRECONDITION), not that it does not exist."""
    from openinteractions.api.app import build_service
    from openinteractions.api.body import parse_create
    from openinteractions.config import Settings
    from openinteractions.errors import ApiError

    async def main() -> ApiError:
        settings = Settings(
            models={"m": {"backend": "scripted", "inline": True}}, store={"data_dir": tmp_path}, signing_key="k" * 32
        )
        service = build_service(settings, tmp_path)
        await service.start()
        gate = asyncio.Event()
        insert = service.store.insert

        def held_insert(record: StoredInteraction) -> asyncio.Future[None]:
            landed = asyncio.get_running_loop().create_future()

            async def later() -> None:
                await gate.wait()
                await insert(record)
                landed.set_result(None)

            asyncio.get_running_loop().create_task(later())
            return landed

        service.store.insert = held_insert  # type: ignore[method-assign]
        run = await service.create(parse_create(b'{"model": "m", "input": "{\\"script\\": [{\\"text\\": \\"a\\"}]}"}'),
                                   "o", "v1beta")  # fmt: skip
        while service.log.length(run.id) < 1:  # interaction.created is out
            await asyncio.sleep(0)
        follow_up = json.dumps({"model": "m", "input": "next", "previous_interaction_id": run.id}).encode()
        with pytest.raises(ApiError) as refused:
            await service.create(parse_create(follow_up), "o", "v1beta")
        gate.set()
        await run.finished.wait()
        await service.stop()
        return refused.value

    error = asyncio.run(main())
    assert (error.http_status, error.status) == (400, "FAILED_PRECONDITION"), error.message
    assert "still in_progress" in error.message
