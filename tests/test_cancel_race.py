"""Cancels that land while a run is ending: exactly one terminal state is logged and stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inprocess import create, scripted_service, until
from openinteractions.errors import ApiError
from openinteractions.events.log import split_frames
from openinteractions.store.base import StoredInteraction

HANG = json.dumps({"script": [{"hang": True}]})


class _HeldWrite(asyncio.Future[None]):
    """A store write that lands when the test says, and tells when a run that is ending waits for it (through
    asyncio.shield, which adds a done callback): the exact point the race needs, however many loop passes the
    run takes to get there."""

    def __init__(self, ending: Callable[[], bool]) -> None:
        super().__init__()
        self._ending = ending
        self.awaited_while_ending = False

    def add_done_callback(self, fn: Callable[[asyncio.Future[None]], object], *, context: Any = None) -> None:
        super().add_done_callback(fn, context=context)
        self.awaited_while_ending = self.awaited_while_ending or self._ending()


def _types(blob: bytes) -> list[str]:
    return [json.loads(frame.split(b"data: ", 1)[1])["event_type"] for frame in split_frames(blob)]


def test_a_second_cancel_in_the_pass_where_the_row_lands_still_stores_the_result(tmp_path: Path) -> None:
    """The first cancel ends the run, which then waits for its row's insert before storing its result; the
    second lands in the loop pass where that insert completes. It used to cut the wait short, the result was
    never queued, and the row stayed in_progress until the next restart marked it failed."""

    async def main() -> tuple[Any, Any, StoredInteraction | None, bytes]:
        service = scripted_service(tmp_path)
        await service.start()
        insert = service.store.insert
        writes: dict[str, asyncio.Future[None]] = {}

        heard: list[_HeldWrite] = []

        def held_insert(record: StoredInteraction) -> asyncio.Future[None]:
            writes["row"] = insert(record)  # the row is written for real; the run hears of it when the test says
            heard.append(_HeldWrite(lambda: service.runs[record.id]._ending))
            return heard[0]

        service.store.insert = held_insert  # type: ignore[method-assign]
        run = await create(service, HANG)
        await until(lambda: "row" in writes)
        await writes["row"]
        assert not heard[0].awaited_while_ending
        first = asyncio.create_task(service.cancel(run.id, "o"))
        await until(lambda: heard[0].awaited_while_ending)  # the run has ended and waits for its insert
        assert service.log.length(run.id) == 3  # created, status_update, then the cancel's terminal event
        heard[0].set_result(None)
        second = asyncio.create_task(service.cancel(run.id, "o"))  # runs before the run resumes
        results = await asyncio.wait_for(asyncio.gather(first, second), 5)
        stored = await service.store.get(run.id, "o", time.time())
        blob = await service.store.events(run.id)
        await service.stop()
        return results[0], results[1], stored, blob

    first, second, stored, blob = asyncio.run(main())
    assert first.status == second.status == "cancelled"
    assert stored is not None and stored.status == "cancelled"
    assert _types(blob) == ["interaction.created", "interaction.status_update", "interaction.completed"]


def test_a_cancel_that_lands_while_a_completed_run_stores_its_result_is_refused(tmp_path: Path) -> None:
    """The run has logged interaction.completed and waits for its result's write: the cancel cannot take, so it
    answers as for any interaction that is not running (it once answered 200 with the completed interaction)."""

    async def scenario() -> None:
        service = scripted_service(tmp_path)
        await service.start()
        finish = service.store.finish
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held: list[asyncio.Future[None]] = []

        def held_finish(*args: Any, **kwargs: Any) -> asyncio.Future[None]:
            written = finish(*args, **kwargs)
            landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            both = asyncio.ensure_future(asyncio.wait([written, gate]))
            both.add_done_callback(lambda _: landed.set_result(None))
            held.append(landed)
            return landed

        service.store.finish = held_finish  # type: ignore[method-assign]
        try:
            run = await create(service, json.dumps({"script": [{"text": "hi"}]}))
            await until(lambda: bool(held))  # completed, and storing it
            assert run.task is not None
            cancel = asyncio.create_task(service.cancel(run.id, "o"))
            await until(lambda: run.task is not None and run.task.cancelling() > 0)  # the cancel is in
            gate.set_result(None)
            try:
                answer = await cancel
                raise AssertionError(f"the cancel answered {answer.status}")
            except ApiError as exc:
                assert exc.status == "FAILED_PRECONDITION" and "is completed" in exc.message
        finally:
            if not gate.done():
                gate.set_result(None)
            await service.stop()

    asyncio.run(scenario())
