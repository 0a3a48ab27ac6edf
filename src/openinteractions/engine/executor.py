"""The executor: owns this process's runs. It resolves a recipe's live parts (backend, server tools, history,
signer), starts the run's task, cancels it, and takes over the runs that another server left: a previous
process on the same database, or a replica that died.

Each stored run is under a lease, renewed every third of ``limits.run_lease_seconds``. Every
``limits.run_claim_seconds`` the executor takes over the runs whose lease ran out or names a server that is
not alive on the database (store.leases; store/replicas.py) and has not been for ``store.replica_grace_seconds``.
A run this server holds but whose lease now names another server (which took this one for dead) is dropped at
once, without writing anything more: its readers are cut off and resume where it now runs.

The service validates a request into a recipe, hands it here, and reads the log; it never drives a run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from pydantic import TypeAdapter

from .. import logs
from ..backends.base import Backend, GenerationRequest
from ..backends.registry import BackendRegistry
from ..backends.speech import build_speech
from ..config import Settings
from ..events.log import EventLog, StreamCut, cut_off
from ..metrics import Metrics
from ..schema.requests import CreateInteractionRequest
from ..schema.steps import Step, ThoughtStep
from ..schema.tools import FunctionTool
from ..store.base import Store, StoredInteraction
from ..telemetry import Telemetry
from ..tools.toolbox import Toolbox
from .agents import AgentRegistry
from .ending import EndHook, no_end_hook
from .history import chained_history
from .inputs import InputReader
from .recipe import RunRecipe
from .replay import offset_after, stored_pages
from .research import ResearchProgram
from .run import Job, Run
from .signatures import InvalidSignature, ThoughtSigner
from .slots import ModelSlots
from .speaking import audio_output
from .toolloop import runnable
from .validate import image_response_format, text_response_format

logger = logging.getLogger(__name__)
_steps = TypeAdapter(list[Step])
_LEFT_BY_A_CRASH = "the server stopped before this interaction finished"


class Executor:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        log: EventLog,
        registry: BackendRegistry,
        signer: ThoughtSigner,
        toolbox: Toolbox,
        clock: Callable[[], float],
        ended: EndHook = no_end_hook,
        metrics: Metrics | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.ended = ended  # called as each run ends (webhooks)
        self.metrics = metrics or Metrics()
        self.telemetry = telemetry  # a span per run, where a collector is configured
        self.store = store
        self.log = log
        self.registry = registry
        self.signer = signer
        self.toolbox = toolbox
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self.closing = False
        self.server_id = secrets.token_hex(8)  # whose lease a run is under
        self._leases: asyncio.Task[None] | None = None
        self._claims: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._absent: dict[str, float] = {}  # servers named by leases and not alive, since when (loop time)
        self._slots: dict[str, ModelSlots] = {}  # per served model, with limits.max_runs_per_model
        self.agents = AgentRegistry(settings.agents, registry)
        self.inputs = InputReader(settings.inputs, settings.tools.url_context)  # media parts → what a model takes
        self.speech = build_speech(settings.speech)  # audio output (engine/speaking.py)

    # ---- starting a run -----------------------------------------------------------------------------

    def prepare(
        self, recipe: RunRecipe, history: list[Step], inputs: list[Step], req: CreateInteractionRequest | None = None
    ) -> Job:
        """The live parts of ``recipe``: ``history`` is the chain's steps, then ``inputs``. The backend's
        ``prepare`` runs here: a ``BackendError`` it raises is the caller's to report."""
        if req is None:
            req = CreateInteractionRequest.model_validate(recipe.create_request)
        route = self.registry.resolve(recipe.route)
        if route is None:
            raise LookupError(f"the model {recipe.route!r} is no longer served")
        if recipe.agent is not None:
            return self._agent_job(recipe, route.name, route.backend, history, inputs)
        tools = self.toolbox.for_request(req.tools or [], recipe.owner)
        callable_now = runnable(tools)  # a group's tools are declared once listed, as the run starts
        generation = GenerationRequest(
            model=route.name,
            history=history,
            system_instruction=req.system_instruction,
            functions=[t for t in req.tools or [] if isinstance(t, FunctionTool)]
            + [tool.declaration() for tool in callable_now.values()],
            server_tools=list(callable_now),
            turn_start=len(history) - len(inputs),
            response_format=text_response_format(req),
            image_format=image_response_format(req),
            thought_text=self._thought_text,
        )
        if req.generation_config is not None:
            generation.config = req.generation_config
        generation.plan = route.backend.prepare(generation)
        return Job(recipe, route.backend, generation, inputs, tools, speech=audio_output(req, self.speech))

    def _agent_job(
        self, recipe: RunRecipe, model: str, backend: Backend, history: list[Step], inputs: list[Step]
    ) -> Job:
        agent = self.agents.resolve(recipe.agent or "")
        if agent is None:
            raise LookupError(f"the agent {recipe.agent!r} is no longer configured")
        search, reader = self.toolbox.agent_tools(agent.settings.max_document_chars)
        generation = GenerationRequest(model=model, history=history, turn_start=len(history) - len(inputs),
                                       thought_text=self._thought_text)  # fmt: skip
        config = recipe.echo.get("agent_config") or {}
        charts = self.toolbox.charts() if config.get("visualization") == "auto" else None
        program = ResearchProgram(agent.settings, search, reader, config.get("collaborative_planning") is True, charts)
        return Job(recipe, backend, generation, inputs, program=program)

    def _thought_text(self, step: ThoughtStep) -> str:
        if not step.signature:
            return ""
        try:
            return self.signer.open(step.signature)
        except InvalidSignature:
            return ""

    def start(self, job: Job, logged: list[bytes] | None = None) -> Run:
        """Start a run; ``logged``: one taken over, whose durable log so far this is."""
        run = Run(job, self.log, self.store, self.signer, self.clock, self.ended)
        run.lease = (self.server_id, self.clock() + self.settings.limits.run_lease_seconds)
        limit = self.settings.limits.max_runs_per_model
        if limit:
            run.slots = self._slots.setdefault(job.recipe.route, ModelSlots(limit))
        self.log.open(run.id, durable=job.recipe.store, frames=logged)
        self.runs[run.id] = run
        if self.telemetry is not None:  # in the creating request's context: its span is the run's parent
            run.span = self.telemetry.run_span(run.id, job.recipe.agent or job.recipe.route, job.recipe.created_at)
        token = logs.interaction_id.set(run.id)  # the task copies the context: all it logs names the interaction
        try:
            run.task = asyncio.create_task(run.execute(logged), name=f"run {run.id}")
        finally:
            logs.interaction_id.reset(token)
        run.task.add_done_callback(lambda _: self._forget(run))
        return run

    def _forget(self, run: Run) -> None:
        if run.holds_slot and run.slots is not None:
            run.slots.give_back()
        if not run.abandoned and not run.lost:
            self._count(run)
        run.abandon()
        self.runs.pop(run.id, None)
        owner = run.spec.owner
        if run.lost:  # its readers resume from where it runs now
            self.log.drop(run.id, cut_off(f"interaction {run.id} is now run by another server: resume there"))
        else:
            rest = (lambda position, offset: self.stored_rest(run.id, owner, position, offset)) if run.stored else None
            self.log.drop(run.id, rest)

    def _count(self, run: Run) -> None:
        """A run's figures, once it has ended (metrics)."""
        spec, summary = run.spec, run.assembler.summary
        route = self.registry.resolve(spec.route)
        model = spec.agent or spec.route
        seconds = max(0.0, run.updated_at - spec.created_at)
        status = summary.get("status", "failed")
        if self.telemetry is not None:
            self.telemetry.end_run(run.span, status, summary.get("usage"), self.log.length(run.id))
        self.metrics.run_ended(model, route.backend_name if route else "", status, summary.get("usage"), seconds,
                               self.log.length(run.id))  # fmt: skip
        if status == "failed":
            errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in run.assembler.errors)
            logger.warning("interaction %s failed: %s", run.id, errors or "no error event",
                           extra={"interaction_id": run.id})  # fmt: skip
        for draft in run.assembler.drafts:  # the server tools' results: their calls, and how they went
            kind = draft.fields["type"]
            if kind.endswith("_result") and kind != "function_result":
                outcome = "error" if draft.fields.get("is_error") else "ok"
                self.metrics.tool_calls.labels(kind.removesuffix("_result"), outcome).inc()

    async def stored_rest(
        self, interaction_id: str, owner: str, position: int, offset: int
    ) -> AsyncGenerator[bytes, None]:
        """A stored log after event ``position``, which ``offset`` bytes were sent up to: where the readers of a
        run go on once its log is dropped. A log that holds references to images is shorter than what was sent:
        there the frame is found by counting."""
        size = await self.store.events_size(interaction_id, owner, self.clock())
        start: int | None = offset
        if size is not None and position and await self.store.has_media(interaction_id):
            start = await offset_after(self.store, interaction_id, position, size)
        if size is None or start is None or size < start:
            raise StreamCut(f"interaction {interaction_id} was deleted while its events were being read")
        async with aclosing(stored_pages(self.store, interaction_id, start, size)) as pages:
            async for page in pages:
                yield page

    # ---- stopping -----------------------------------------------------------------------------------

    async def stop(self, run: Run) -> None:
        """Cancel ``run`` and wait until its result is stored."""
        if run.task is not None and not run.finished.is_set():
            run.task.cancel()
        await run.finished.wait()

    def begin_shutdown(self) -> None:
        """Refuse new runs and cancel the running ones, at once."""
        self.closing = True
        for task in (self._leases, self._claims, self._watchdog):
            if task is not None:
                task.cancel()
        for run in list(self.runs.values()):
            if run.task and not run.task.done():
                run.task.cancel()

    async def stop_all(self) -> None:
        self.begin_shutdown()
        await asyncio.gather(*(r.finished.wait() for r in list(self.runs.values())))

    # ---- leases, and runs a previous process left -------------------------------------------------

    async def take_over(self) -> None:
        """At startup: join the database as this server, take over the runs left by servers that are gone,
        then keep this server's leases and look for more such runs."""
        await self.store.join(self.server_id)
        await self._claim_lapsed()
        self._leases = asyncio.create_task(self._keep_leases(), name="run leases")
        self._claims = asyncio.create_task(self._claim_forever(), name="run claims")
        if self.settings.limits.run_stall_seconds:
            self._watchdog = asyncio.create_task(self._watch(self.settings.limits.run_stall_seconds), name="watchdog")

    def cancel_requested(self, interaction_id: str) -> None:
        """Another replica asked for this run to be cancelled (a notification): cancel it if it runs here."""
        run = self.runs.get(interaction_id)
        if run is not None and run.task is not None and not run.finished.is_set():
            run.task.cancel()

    async def _watch(self, stall: float) -> None:
        """Fail runs that made no progress for ``stall`` seconds. A run counts its events (``progress``) on
        its hot path; this looks at the counts a few times per period, off that path."""
        seen: dict[str, tuple[int, float]] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(stall / 4)
            now = loop.time()
            for interaction_id, run in list(self.runs.items()):
                count, since = seen.get(interaction_id, (-1, now))
                if run.progress != count or run.waiting:
                    seen[interaction_id] = (run.progress, now)
                elif now - since >= stall:
                    logger.warning("interaction %s made no progress for %g s: failing it", interaction_id, stall)
                    run.stall(stall)
            for gone in seen.keys() - self.runs.keys():
                del seen[gone]

    async def _keep_leases(self) -> None:
        lease = self.settings.limits.run_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                held = [i for i, run in self.runs.items() if run.spec.store and not run.finished.is_set()]
                if held:
                    await self.store.heartbeat(held, self.server_id, self.clock() + lease)
                    self._check_held(held, await self.store.run_states(held))
            except Exception:
                logger.exception("renewing run leases failed")

    def _check_held(self, held: list[str], states: dict[str, tuple[str | None, bool]]) -> None:
        """Drop the runs another server took over; cancel those a replica asked to (a missed notification)."""
        for interaction_id in held:
            run = self.runs.get(interaction_id)
            state = states.get(interaction_id)
            if run is None or state is None:  # ended meanwhile
                continue
            lease_owner, cancel = state
            if lease_owner != self.server_id:
                logger.warning("interaction %s was taken over by server %s: dropping it here", run.id, lease_owner)
                run.lose()
            elif cancel:
                self.cancel_requested(interaction_id)

    async def _claim_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.limits.run_claim_seconds)
            try:
                await self._claim_lapsed()
            except Exception:
                logger.exception("looking for runs to take over failed")

    async def _claim_lapsed(self) -> None:
        """Take over the runs whose lease ran out, or names a server that has not been alive for the grace
        period (none on a database only this process uses: whoever held those leases is gone)."""
        if self.closing:
            return
        named, alive = await self.store.leases()
        now = asyncio.get_running_loop().time()
        absent = named.keys() - alive - {self.server_id}
        self._absent = {server: self._absent.get(server, now) for server in absent}
        grace = self.settings.store.replica_grace_seconds if self.store.shared else 0.0
        dead = {server for server, since in self._absent.items() if now - since >= grace}
        # A dead server's runs are spread over the live ones: each takes its share per pass, and the next pass
        # takes what another has not.
        share = -(-sum(named[server] for server in dead) // max(1, len(alive))) if dead and self.store.shared else None
        if not dead and not await self.store.lapsed(self.clock()):
            return  # nothing to take: no write transaction (on SQLite it would divert the loop's commits)
        until = self.clock() + self.settings.limits.run_lease_seconds
        await self._continue(await self.store.claim(self.server_id, self.clock(), until, dead, share))

    async def _continue(self, records: list[StoredInteraction]) -> None:
        for record in records:
            if record.id in self.runs or self.closing:
                continue
            logged = await self.store.run_events(record.id)
            try:
                job = await self._job_of(record)
            except Exception as exc:
                logger.warning("interaction %s cannot go on after a restart (%s): marked failed", record.id, exc)
                await self._fail(record, logged)
                continue
            logger.warning("interaction %s was left unfinished by server %s: continuing it", record.id,
                           record.lease_owner or "?")  # fmt: skip
            self.metrics.claims.inc()
            run = self.start(job, logged)
            run.cancel_at_start = record.cancel_requested is not None
            run.usage_before = record.usage

    async def _job_of(self, record: StoredInteraction) -> Job:
        if record.recipe is None:
            raise ValueError("it was started by a version without run recipes")
        recipe = RunRecipe.loads(record.recipe, record.request or {}, json.loads(record.input_steps))
        inputs = _steps.validate_python(recipe.input_steps)
        history: list[Step] = []
        if recipe.previous_interaction_id is not None:
            limits = self.settings.limits
            history = await chained_history(self.store, recipe.owner, recipe.previous_interaction_id, self.clock(),
                                            limits.max_chain_length, limits.max_chain_bytes)  # fmt: skip
        steps = history + inputs
        route = self.registry.resolve(recipe.route)
        if route is not None:  # (prepare says it is gone)
            steps = await self.inputs.given(steps, route.backend.capabilities, route.name, len(history))
        return self.prepare(recipe, steps, inputs)

    async def _fail(self, record: StoredInteraction, logged: list[bytes]) -> None:
        run = Run(_recovered_job(record), self.log, self.store, self.signer, self.clock, self.ended)
        self.log.open(run.id, durable=True, frames=logged)
        await run.recover("aborted", _LEFT_BY_A_CRASH, logged)
        self.log.drop(run.id)


class _NoBackend:
    capabilities: Any = None

    def prepare(self, request: GenerationRequest) -> None:
        return None

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Any, None]:
        raise RuntimeError("a recovered run does not generate")

    async def aclose(self) -> None:
        return None


def _recovered_job(record: StoredInteraction) -> Job:
    recipe = RunRecipe(
        interaction_id=record.id,
        owner=record.owner,
        model=record.model or "",
        route=record.model or "",
        store=True,
        background=False,
        created_at=record.created_at,
        expires_at=record.expires_at,
        previous_interaction_id=record.previous_interaction_id,
        request={},
        echo=record.request or {},
        input_steps=[],
        timeout=0.0,
        max_tool_rounds=0,
        tool_budget=0.0,
    )
    return Job(recipe, _NoBackend(), GenerationRequest(model=record.model or "", history=[]), [])
