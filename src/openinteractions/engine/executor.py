"""The executor: owns this process's runs. It resolves a recipe's live parts (backend, server tools, history,
signer), starts the run's task, cancels it, and at startup takes over the runs a previous process left.

The service validates a request into a recipe, hands it here, and reads the log; it never drives a run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from pydantic import TypeAdapter

from ..backends.base import GenerationRequest
from ..backends.registry import BackendRegistry
from ..config import Settings
from ..events.log import EventLog, StreamCut
from ..schema.requests import CreateInteractionRequest
from ..schema.steps import Step, ThoughtStep
from ..schema.tools import FunctionTool
from ..store.base import Store, StoredInteraction
from ..tools.toolbox import Toolbox
from .recipe import RunRecipe
from .replay import stored_pages
from .run import Job, Run
from .signatures import InvalidSignature, ThoughtSigner
from .validate import text_response_format

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
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.registry = registry
        self.signer = signer
        self.toolbox = toolbox
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self.closing = False

    # ---- starting a run -----------------------------------------------------------------------------

    def prepare(
        self, recipe: RunRecipe, history: list[Step], inputs: list[Step], req: CreateInteractionRequest | None = None
    ) -> Job:
        """The live parts of ``recipe``: ``history`` is the chain's steps, then ``inputs``. The backend's
        ``prepare`` runs here: a ``BackendError`` it raises is the caller's to report."""
        if req is None:
            req = CreateInteractionRequest.model_validate(recipe.request)
        route = self.registry.resolve(recipe.route)
        if route is None:
            raise LookupError(f"the model {recipe.route!r} is no longer served")
        tools = self.toolbox.for_request(req.tools or [])
        generation = GenerationRequest(
            model=route.name,
            history=history,
            system_instruction=req.system_instruction,
            functions=[t for t in req.tools or [] if isinstance(t, FunctionTool)]
            + [tool.declaration() for tool in tools.values()],
            server_tools=list(tools),
            turn_start=len(history) - len(inputs),
            response_format=text_response_format(req),
            thought_text=self._thought_text,
        )
        if req.generation_config is not None:
            generation.config = req.generation_config
        generation.plan = route.backend.prepare(generation)
        return Job(recipe, route.backend, generation, inputs, tools)

    def _thought_text(self, step: ThoughtStep) -> str:
        if not step.signature:
            return ""
        try:
            return self.signer.open(step.signature)
        except InvalidSignature:
            return ""

    def start(self, job: Job) -> Run:
        run = Run(job, self.log, self.store, self.signer, self.clock)
        self.log.open(run.id, durable=job.recipe.store)
        self.runs[run.id] = run
        run.task = asyncio.create_task(run.execute(), name=f"run {run.id}")
        run.task.add_done_callback(lambda _: self._forget(run))
        return run

    def _forget(self, run: Run) -> None:
        run.abandon()
        self.runs.pop(run.id, None)
        owner = run.spec.owner
        self.log.drop(run.id, (lambda offset: self._stored_rest(run.id, owner, offset)) if run.stored else None)

    async def _stored_rest(self, interaction_id: str, owner: str, offset: int) -> AsyncGenerator[bytes, None]:
        """A stored log from byte ``offset``: where the readers of a run go on once its log is dropped."""
        size = await self.store.events_size(interaction_id, owner, self.clock())
        if size is None or size < offset:
            raise StreamCut(f"interaction {interaction_id} was deleted while its events were being read")
        async with aclosing(stored_pages(self.store, interaction_id, offset, size)) as pages:
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
        for run in list(self.runs.values()):
            if run.task and not run.task.done():
                run.task.cancel()

    async def stop_all(self) -> None:
        self.begin_shutdown()
        await asyncio.gather(*(r.finished.wait() for r in list(self.runs.values())))

    # ---- runs a previous process left ---------------------------------------------------------------

    async def take_over(self) -> None:
        """A run that a previous process left unfinished ends as failed, with a proper event log."""
        for record in await self.store.unfinished():
            run = Run(_recovered_job(record), self.log, self.store, self.signer, self.clock)
            self.log.open(run.id)
            await run.recover("aborted", _LEFT_BY_A_CRASH)
            self.log.drop(run.id)
            logger.warning("interaction %s was left unfinished by a previous process: marked failed", run.id)


class _NoBackend:
    capabilities: Any = None

    def prepare(self, request: GenerationRequest) -> None:
        return None

    def generate(self, request: GenerationRequest) -> AsyncIterator[Any]:
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
