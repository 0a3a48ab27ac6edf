"""A run: one interaction's generation, from backend events to its event log and its stored record.

A run never writes to a socket. It appends events, folds them with the assembler and, when it ends, persists
the result. Whatever happens, its log ends with a terminal event: ``interaction.completed`` (completed,
requires_action, incomplete, cancelled, budget_exceeded) or ``error`` (failed), with every open step closed
first.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from .. import jsontext
from ..backends.base import (
    Backend,
    BackendError,
    Finish,
    GenerationRequest,
    ImageUsageReport,
    UsageReport,
    VisionUsageReport,
    continues,
)
from ..events.log import EventLog, LogLimitExceeded, LogWriteFailed
from ..ids import rfc3339_from_epoch
from ..schema.errors import StreamError
from ..schema.events import (
    ChunkEvent,
    ErrorEvent,
    Event,
    InteractionCompletedEvent,
    InteractionCreatedEvent,
    InteractionStatusUpdateEvent,
)
from ..schema.interaction import InteractionSummary
from ..schema.steps import Step
from ..schema.usage import GroundingToolCount, ModalityTokens, Usage
from ..store.base import FinalState, Store, StoredInteraction
from ..tools.registry import SERVER_TOOLS
from .assembler import Assembler
from .ending import EndHook, RunEnding, no_end_hook
from .program import Program, ProgramRun
from .recipe import RunRecipe
from .resume import (
    LogState,
    built_steps,
    fold_frame,
    function_calls,
    read_log,
    resume_point,
    round_start,
    unanswered_call,
)
from .signatures import ThoughtSigner
from .slots import ModelSlots
from .speaking import SpeechPlan, speaking_writer, with_audio_usage
from .steps import ServerCall, StepWriter
from .toolloop import BudgetExceeded, ToolLoop, Tools, groups, prelude

logger = logging.getLogger(__name__)
_steps = TypeAdapter(list[Step])


class CannotContinue(Exception):
    """A run taken over after a crash cannot go on from its log."""


@dataclass
class Job:
    """A recipe with its live parts resolved: what the executor's ``prepare`` returns and a run takes."""

    recipe: RunRecipe
    backend: Backend
    generation: GenerationRequest  # with the backend's plan
    inputs: list[Step]
    tools: Tools = field(default_factory=dict)
    program: Program | None = None  # an agent's program; None: the tool loop
    speech: SpeechPlan | None = None  # audio output: the model's text is spoken (engine/speaking.py)


@dataclass
class _Tally:
    usage: UsageReport | None = None
    finish: str = "stop"
    images: int = 0  # of the output tokens, those of generated images
    seen_images: int = 0  # of the input tokens, those of the prompts' images

    def add(self, report: UsageReport) -> None:
        if isinstance(report, ImageUsageReport):
            self.images += report.image_output_tokens
        if isinstance(report, VisionUsageReport):
            self.seen_images += report.image_input_tokens
        if self.usage is None:
            self.usage = report
            return
        u = self.usage
        self.usage = UsageReport(
            u.input_tokens + report.input_tokens,
            u.output_tokens + report.output_tokens,
            u.thought_tokens + report.thought_tokens,
            u.cached_tokens + report.cached_tokens,
            u.tool_use_tokens + report.tool_use_tokens,
        )


def usage_model(
    report: UsageReport | None, text_only: bool = True, searches: int = 0, images: int = 0, seen_images: int = 0
) -> Usage | None:
    """``text_only``: every input was text, so all input tokens are text tokens. ``seen_images``: the input
    tokens a backend counted as the prompts' images (llama.cpp with a projector, whose prompts hold only text and
    images). Otherwise the backends do not say how the input splits by modality, and no breakdown is given
    rather than a wrong one."""
    if report is None:
        return None
    total = report.input_tokens + report.output_tokens + report.thought_tokens + report.tool_use_tokens
    return Usage(
        total_tokens=total,
        total_input_tokens=report.input_tokens,
        input_tokens_by_modality=_input_modalities(report.input_tokens, text_only, seen_images),
        total_cached_tokens=report.cached_tokens,
        total_output_tokens=report.output_tokens,
        output_tokens_by_modality=_output_modalities(report.output_tokens, images),
        total_tool_use_tokens=report.tool_use_tokens,
        total_thought_tokens=report.thought_tokens,
        grounding_tool_count=[GroundingToolCount(type="google_search", count=searches)] if searches else None,
    )


def _input_modalities(tokens: int, text_only: bool, seen_images: int) -> list[ModalityTokens] | None:
    if seen_images:
        return [ModalityTokens(modality="text", tokens=tokens - seen_images),
                ModalityTokens(modality="image", tokens=seen_images)]  # fmt: skip
    return [ModalityTokens(modality="text", tokens=tokens)] if text_only else None


class Run:
    def __init__(
        self,
        job: Job,
        log: EventLog,
        store: Store,
        signer: ThoughtSigner,
        clock: Any,
        ended: EndHook = no_end_hook,
    ) -> None:
        spec = job.recipe
        self.job = job
        self.spec = spec
        self._ended = ended
        self.id = spec.interaction_id
        self.assembler = Assembler()
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._backend = job.backend
        self._base = list(job.generation.history)  # the chain's steps and this interaction's input
        self._log = log
        self._store = store
        self._signer = signer
        self._clock = clock
        self._ending = False
        self._inserted: asyncio.Future[None] | None = None
        self._announcement: asyncio.Task[None] | None = None
        self._steps_ready = False
        self.durable = asyncio.Event()  # announced and, with store, its row committed (or the run is over)
        self.abandoned = False  # cancelled before it ran a line: nothing logged, nothing stored
        self.stored = False  # its result and whole log are in the store
        self.updated_at = spec.created_at
        self._created = rfc3339_from_epoch(spec.created_at)
        self.lease: tuple[str, float] | None = None  # (this server, until): set by the executor
        self.slots: ModelSlots | None = None  # its model's run slots, if limited (set by the executor)
        self.holds_slot = False
        self.waiting = False  # queued for a slot
        self.progress = 0  # backend events and log events so far: the watchdog's measure of progress
        self.stalled_after: float | None = None  # set when the watchdog stops the run
        self._view = Assembler()  # the run as far as its log is committed (committed_view)
        self._view_at = 0
        self._interrupted: ServerCall | None = None  # a server tool a crash cut off, run again on taking over
        self.lost = False  # another server runs it now: this one stops without writing anything more
        self.cancel_at_start = False  # taken over with a cancel asked for: it ends cancelled at once
        self.usage_before: str | None = None  # taken over: the usage its earlier rounds had (JSON)
        self.span: Any = None  # its trace span, where telemetry is on (set and ended by the executor)

    def lose(self) -> None:
        """Another server took this run over (it took this one for dead): stop now and write nothing more."""
        if self.task is not None and not self.task.done():
            self.lost = True
            self.task.cancel()

    def committed_view(self) -> Assembler:
        """The run as far as its log is committed, which a crash cannot take back: what a GET shows while it
        runs. A second fold of the committed frames, brought up to date at each call (only reads pay for it);
        once the run has ended, its own fold."""
        if self.finished.is_set():
            return self.assembler
        frames, end = self._log.frames(self.id), self._log.length(self.id)
        for frame in frames[self._view_at : end]:
            fold_frame(frame, self._view)
        self._view_at = max(self._view_at, end)
        return self._view

    def stall(self, seconds: float) -> None:
        """The watchdog saw no progress for ``seconds``: the run ends ``failed`` with an ``error`` event."""
        if self.task is not None and not self.task.done() and not self._ending:
            self.stalled_after = seconds
            self.task.cancel()

    def summary(self, status: str, usage: Usage | None = None) -> InteractionSummary:
        return InteractionSummary(
            id=self.id,
            status=status,  # type: ignore[arg-type]
            model=None if self.spec.agent else self.spec.model,
            agent=self.spec.agent,
            created=self._created,
            updated=rfc3339_from_epoch(self.updated_at) if status not in ("in_progress", "queued") else self._created,
            service_tier="standard",
            usage=usage,
        )

    async def emit(self, event: Event | ChunkEvent) -> None:
        self.progress += 1
        if self._announcement is not None:
            await self._announced()
        await self._append(event)

    async def _append(self, event: Event | ChunkEvent) -> None:
        await self._log.append(self.id, event, terminal=self._ending)
        self.assembler.apply(event)

    async def _announce(self, status: str = "in_progress") -> None:
        """The created and status events, and the row's insert: execute's first step schedules this, so that
        the backend's request goes out before it and the two overlap."""
        if self.spec.store:  # queued before the events, so that no reader sees an event of a row not stored
            self._inserted = self._store.insert(self._record(status))
            self._inserted.add_done_callback(lambda _: self.durable.set())
        await self._append(InteractionCreatedEvent(interaction=self.summary(status)))
        await self._append(InteractionStatusUpdateEvent(interaction_id=self.id, status=status))  # type: ignore[arg-type]
        if not self.spec.store:
            self.durable.set()

    async def _announced(self) -> None:
        """Every other event waits for the announcement, so that it stays first in the log."""
        task = self._announcement
        if task is None:
            return
        try:
            await _landed(task, ending=self._ending)
        finally:
            if task.done():
                self._announcement = None

    async def execute(self, logged: list[bytes] | None = None) -> None:
        """Run the interaction; ``logged``: a run taken over after a crash, whose log so far this is."""
        writer = speaking_writer(self.job.speech, self.emit, self._signer, self.spec.summaries)
        tally = _Tally(usage=_report(self.usage_before), images=_image_tokens(self.usage_before))
        first_round = None
        try:
            if logged is None and (self.slots is None or self._take_slot()):
                self._announcement = asyncio.get_running_loop().create_task(self._announce())
            elif logged is None:
                await self._queue()
            else:
                first_round = await self._take_over(logged, writer)
                if first_round is None:  # it had ended: only its stored result was missing
                    return
                if self.cancel_at_start:
                    raise asyncio.CancelledError
            async with asyncio.timeout(self._time_left(taken_over=logged is not None)):
                await self._generate(writer, tally, first_round)
            await writer.close()
            await self._complete(_status(writer, tally, self.job.program), tally)
        except asyncio.CancelledError:
            if self.lost:
                return
            await self._close_steps(writer)
            if self.stalled_after is not None:
                message = f"the run made no progress for {self.stalled_after:g} s (limits.run_stall_seconds)"
                await self._fail("deadline_exceeded", message)
            else:
                await self._complete("cancelled", tally)
        except BudgetExceeded as exc:
            logger.info("interaction %s: %s", self.id, exc)
            await self._close_steps(writer)
            await self._complete("budget_exceeded", tally)
        except BackendError as exc:
            await self._close_steps(writer)
            await self._fail(exc.code, exc.message)
        except TimeoutError:
            await self._close_steps(writer)
            await self._fail("deadline_exceeded", f"the run took longer than {self.spec.timeout:g} s")
        except LogLimitExceeded as exc:
            await self._close_steps(writer)
            await self._fail("resource_exhausted", f"event log limit reached: {exc}")
        except LogWriteFailed as exc:
            # Nothing more can be logged: another server may have taken the run over (it wrote the event's
            # number first) or the database is gone. Its lease runs out and whoever claims it next continues it.
            logger.error("run %s: an event could not be stored (%s): leaving it to be taken over", self.id, exc)
            self.lost = True
        except CannotContinue as exc:
            await self._close_steps(writer)
            await self._fail("aborted", str(exc))
        except Exception:
            logger.exception("run %s failed", self.id)
            await self._close_steps(writer)
            await self._fail("internal", "internal error while generating")
        finally:
            await self._persist()

    def _time_left(self, taken_over: bool) -> float:
        """The run's time limit; a run taken over after a crash keeps the deadline it had, counted from its
        creation (a run that keeps crashing its servers does not get a new one each time)."""
        if not taken_over:
            return self.spec.timeout
        return max(0.0, self.spec.timeout - (float(self._clock()) - self.spec.created_at))

    async def _wait_for_slot(self) -> None:
        assert self.slots is not None
        self.waiting = True  # no progress is expected meanwhile: the watchdog leaves it be
        try:
            await self.slots.wait()
        finally:
            self.waiting = False
        self.holds_slot = True

    def _take_slot(self) -> bool:
        assert self.slots is not None
        self.holds_slot = self.slots.take()
        return self.holds_slot

    async def _queue(self) -> None:
        """Every slot of the model is taken: announce the run ``queued``, wait for a slot (first come, first
        served), then go ``in_progress``."""
        assert self.slots is not None
        self._announcement = asyncio.get_running_loop().create_task(self._announce("queued"))
        await self._announced()
        await self._wait_for_slot()
        await self.emit(InteractionStatusUpdateEvent(interaction_id=self.id, status="in_progress"))

    async def _take_over(self, logged: list[bytes], writer: StepWriter) -> int | None:
        """Fold the log a previous process left, and set up the round it stopped in; None if the run had
        ended. A backend with ``continuation`` goes on from where the log stops (the cut step's text is the
        start of its answer); another one starts the round again from everything logged, after the cut step
        is closed and an ``interaction.status_update`` (``in_progress``) marks the restart."""
        self._inserted = asyncio.get_running_loop().create_future()
        self._inserted.set_result(None)  # its row is there
        self._steps_ready = True
        self.durable.set()
        state = read_log(logged, self.assembler)
        if state.ended:
            self._ending = True
            return None
        if state.events == 0:
            await self._append(InteractionCreatedEvent(interaction=self.summary("in_progress")))
        if state.events <= 1:
            await self._append(InteractionStatusUpdateEvent(interaction_id=self.id, status="in_progress"))
        if self.slots is not None and self.assembler.status == "queued":
            if not self._take_slot():
                await self._wait_for_slot()
            await self._append(InteractionStatusUpdateEvent(interaction_id=self.id, status="in_progress"))
        elif self.slots is not None:
            self.slots.force()
            self.holds_slot = True
        gen, steps = self.job.generation, built_steps(self.assembler)
        if self.job.program is not None:
            return await self._resume_program(state, writer, steps)
        if unanswered_call(state.types):
            return await self._rerun_tool(state, writer, steps)
        rounds, start = round_start(state.types, self._reads_first(steps))
        writer.function_calls = function_calls(steps)
        point = resume_point(steps, state, start)
        if continues(self._backend.capabilities, point):
            thought = point.prefill if point.open_step == "thought" else ""
            writer.resume_at(len(state.types), point.open_step, thought)
            gen.history = self._base + _steps.validate_python([s for s in steps[:start] if s is not None])
            gen.resume = point
        else:
            writer.resume_at(len(state.types), state.types[-1] if state.open_index is not None else None)
            await writer.close(strict=False)
            await self._append(InteractionStatusUpdateEvent(interaction_id=self.id, status="in_progress"))
            gen.history = self._base + _steps.validate_python(self.assembler.steps())
        gen.round = rounds
        gen.plan = self._backend.prepare(gen)
        return rounds

    async def _resume_program(self, state: LogState, writer: StepWriter, steps: list[dict[str, Any] | None]) -> int:
        """An agent's program folds its state from the log; the step the crash cut off is closed (and the restart
        marked) unless the program goes on with it."""
        assert self.job.program is not None
        cut = state.types[-1] if state.open_index is not None else None
        writer.resume_at(len(state.types), cut)
        if not self.job.program.take_over(steps, cut, self._backend) and cut is not None:
            await writer.close(strict=False)
            await self._append(InteractionStatusUpdateEvent(interaction_id=self.id, status="in_progress"))
        return 0

    async def _rerun_tool(self, state: LogState, writer: StepWriter, steps: list[dict[str, Any] | None]) -> int:
        """The log stops between a server tool's call and its result (the tool was running): the tool loop runs
        it again first (its call, as logged), then goes on with the next round."""
        call = steps[-1] or {}
        kind = SERVER_TOOLS.of_step(state.types[-1])
        name = self._logged_tool(call) or (kind.type if kind is not None else state.types[-1])
        if state.open_index is not None:  # cut inside the call step itself: its arguments may not all be there
            raise CannotContinue(f"the server stopped while it logged a call of {name}")
        if kind is None or name not in self.job.tools:
            raise CannotContinue(f"the server stopped while {name} ran, and this server cannot run {name}")
        arguments = kind.logged_arguments(call)
        self._interrupted = ServerCall(name, str(call.get("id", "")), arguments=arguments or {},
                                       lost=arguments is None)  # fmt: skip
        writer.function_calls = function_calls(steps)
        writer.resume_at(len(state.types), None)
        rounds, _ = round_start(state.types, self._reads_first(steps))
        self.job.generation.round = rounds
        return rounds

    def _reads_first(self, steps: list[dict[str, Any] | None]) -> bool:
        """The run's first server-tool steps are its own, not a round's: the prompt's URLs read, or tool groups
        (MCP servers) that could not be listed."""
        return bool(prelude(self.job.tools, self.job.inputs)) or any(g.opens(steps) for g in groups(self.job.tools))

    def _logged_tool(self, call: dict[str, Any]) -> str | None:
        """A logged call of a group's tool (an MCP server's, logged under the server's and the tool's names):
        the tool, under the function the run knows it as again (None: not a group's)."""
        for group in groups(self.job.tools):
            found = group.logged(call)
            if found is not None:
                self.job.tools[found[0]] = found[1]
                return found[0]
        return None

    async def recover(self, code: str, message: str, logged: list[bytes]) -> None:
        """End a run that a previous process left and that cannot go on (its recipe is missing or names a
        model no longer served): its log so far is kept, its open step closed, then the error."""
        writer = StepWriter(self.emit, self._signer, False)
        try:
            self._inserted = asyncio.get_running_loop().create_future()
            self._inserted.set_result(None)
            state = read_log(logged, self.assembler)
            if not state.ended:
                if state.events == 0:
                    await self._append(InteractionCreatedEvent(interaction=self.summary("in_progress")))
                writer.resume_at(len(state.types), state.types[-1] if state.open_index is not None else None)
                await self._close_steps(writer)
                await self._fail(code, message)
        finally:
            await self._persist()

    async def _generate(self, writer: StepWriter, tally: _Tally, first_round: int | None) -> None:
        spec, job = self.spec, self.job
        if job.program is not None:
            parts = ProgramRun(self._backend, job.generation, writer, job.inputs, self._ready_for_steps, tally.add,
                               lambda: self._save_usage(tally), _tokens(tally.usage),
                               float(self._clock()) - self.spec.created_at)  # fmt: skip
            await job.program.run(parts)
            return
        tools = ToolLoop(job.tools, self._backend, job.generation, writer, self.assembler, base=self._base,
                         max_rounds=spec.max_tool_rounds, time_budget=spec.tool_budget,
                         round_done=lambda: self._save_usage(tally))  # fmt: skip
        await tools.run(lambda: self._round(writer, tally), job.inputs, self._ready_for_steps, first_round,
                        self._interrupted)  # fmt: skip

    def _save_usage(self, tally: _Tally) -> None:
        """Between rounds, a stored run keeps its usage so far: a run taken over after a crash counts it."""
        if self.spec.store and tally.usage is not None and self._inserted is not None:
            usage = usage_model(tally.usage, _all_text(self.job.generation.history), images=tally.images,
                                seen_images=tally.seen_images)  # fmt: skip
            if usage is not None:
                self._store.save_usage(self.id, jsontext.dumps(usage.wire()))

    async def _ready_for_steps(self) -> None:
        """No step goes out before the announcement and, with store, before the row is durable."""
        await self._announced()
        if self._inserted is not None and not self._inserted.done():
            await asyncio.shield(self._inserted)  # cancelling the run must not cancel the write
        self._steps_ready = True

    async def _round(self, writer: StepWriter, tally: _Tally) -> None:
        """One generation of the backend, its events fed to the step writer."""
        async with aclosing(self._backend.generate(self.job.generation)) as events:
            async for event in events:
                self.progress += 1
                if not self._steps_ready:  # inline: this loop is hot
                    await self._ready_for_steps()
                if isinstance(event, UsageReport):
                    tally.add(event)
                elif isinstance(event, Finish):
                    tally.finish = event.reason
                else:
                    await writer.feed(event)

    async def _close_steps(self, writer: StepWriter) -> None:
        """On the way out, close what is open; from here on appends bypass the log limits."""
        self._ending = True
        await writer.close(strict=False)

    async def _complete(self, status: str, tally: _Tally) -> None:
        self._ending = True
        self.updated_at = self._clock()
        searches = self.assembler.count("google_search_result")  # searches that ran to a result
        usage = usage_model(tally.usage, _all_text(self.job.generation.history), searches, tally.images,
                            tally.seen_images)  # fmt: skip
        if self.job.speech is not None:
            usage = with_audio_usage(usage, self.assembler.steps())
        summary = self.summary(status, usage)
        await self.emit(InteractionCompletedEvent(interaction=summary))

    async def _fail(self, code: str, message: str) -> None:
        self.updated_at = self._clock()
        await self.emit(ErrorEvent(error=StreamError(code=code, message=message)))

    async def _persist(self) -> None:
        """Store the result. A cancel from here on is ignored: the run is already ending, and a second cancel
        (two close cancel requests, a cancel and a shutdown) landing in the pass where a write completes used
        to skip the final write, leaving the row in_progress."""
        self._ending = True
        if self.lost:
            self.durable.set()
            self.finished.set()
            return
        try:
            await self._announced()  # its insert, if any, must not outlive the run
            if self._inserted is not None:
                await _landed(self._inserted, ending=True)
            status = self.assembler.summary.get("status", "failed")
            config = self.spec.echo.get("webhook_config")
            # Queued in the same step as the finish below, so that both commit in one transaction.
            self._ended(RunEnding(self.spec.owner, self.id, status, config, self.assembler.errors))
            if self._inserted is not None:
                self._log.release(self.id)  # events a reader's hold kept back: the result must cover them
                final = self.final_state()
                await _landed(self._store.finish(self.id, final, self._log.frames(self.id)), ending=True)
                self.stored = True
        except Exception:
            logger.exception("could not store the result of interaction %s", self.id)
        finally:
            self._release()

    def abandon(self) -> None:
        """The task was cancelled before it ran a line (shutdown right after the launch): nothing was logged
        or stored, and its readers and waiters are let go."""
        if not self.finished.is_set():
            self.abandoned = True
            self._release()

    def _release(self) -> None:
        self._log.close(self.id)
        self.durable.set()
        self.finished.set()

    def final_state(self) -> FinalState:
        summary = self.assembler.summary
        return FinalState(
            status=summary.get("status", "failed"),
            updated_at=self.updated_at,
            steps=jsontext.dumps(self.assembler.steps()),
            usage=jsontext.dumps(summary["usage"]) if summary.get("usage") else None,
            errors=jsontext.dumps(self.assembler.errors) if self.assembler.errors else None,
        )

    def _record(self, status: str) -> StoredInteraction:
        spec = self.spec
        return StoredInteraction(
            id=spec.interaction_id,
            owner=spec.owner,
            status=status,
            model=spec.model,
            previous_interaction_id=spec.previous_interaction_id,
            created_at=spec.created_at,
            updated_at=spec.created_at,
            expires_at=spec.expires_at,
            request=spec.echo,
            input_steps=jsontext.dumps(spec.input_steps),
            recipe=spec.dumps(),
            lease_owner=self.lease[0] if self.lease else None,
            lease_until=self.lease[1] if self.lease else None,
        )


async def _landed(work: asyncio.Future[Any], *, ending: bool) -> None:
    """Wait for a store write (or the announcement) to land, even if this task is cancelled meanwhile: a cancel
    must not let readers see the run as finished before it is stored. A cancel that came meanwhile is raised
    once the work has landed, unless the run is ``ending``: its terminal event and final write come next, and
    exactly one terminal state must be logged and stored whatever else is cancelled."""
    cancelled: asyncio.CancelledError | None = None
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None and not ending:
        raise cancelled
    work.result()


def _report(usage: str | None) -> UsageReport | None:
    """The usage a run saved between its rounds (a ``Usage`` as JSON), back as a report to add to."""
    if not usage:
        return None
    u = Usage.model_validate_json(usage)
    return UsageReport(u.total_input_tokens or 0, u.total_output_tokens or 0, u.total_thought_tokens or 0,
                       u.total_cached_tokens or 0, u.total_tool_use_tokens or 0)  # fmt: skip


def _image_tokens(usage: str | None) -> int:
    """The image output tokens of the usage a run saved between its rounds."""
    if not usage:
        return 0
    by_modality = Usage.model_validate_json(usage).output_tokens_by_modality or []
    return sum(m.tokens for m in by_modality if m.modality == "image")


def _output_modalities(output: int, images: int) -> list[ModalityTokens] | None:
    """Only where images were generated: the output tokens of the text, and those of the images."""
    if not images:
        return None
    return [ModalityTokens(modality="text", tokens=output - images), ModalityTokens(modality="image", tokens=images)]


def _tokens(report: UsageReport | None) -> int:
    return 0 if report is None else report.input_tokens + report.output_tokens + report.thought_tokens


def _all_text(steps: list[Any]) -> bool:
    blocks = (block for step in steps for block in getattr(step, "content", None) or [])
    return all(getattr(block, "type", "text") == "text" for block in blocks)


def _status(writer: StepWriter, tally: _Tally, program: Program | None) -> str:
    if writer.function_calls or (program is not None and program.outcome == "requires_action"):
        return "requires_action"
    return "incomplete" if tally.finish == "max_tokens" else "completed"
