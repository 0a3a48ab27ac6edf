"""The interactions service: what the HTTP layer calls. It starts runs and hands out their event logs.

create → validate → history → run (appends to the event log) ; get / stream / cancel / delete read the
live run or the store, always scoped to the caller's owner id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .. import jsontext
from ..backends.base import BackendError
from ..backends.registry import BackendRegistry, Route
from ..config import Settings
from ..errors import ApiError, failed_precondition, invalid_argument, not_found, too_many_requests, validation_error
from ..events.log import MemoryEventLog, StoredRest, StreamCut
from ..ids import new_interaction_id
from ..metrics import Metrics
from ..schema.interaction import Interaction
from ..schema.requests import CreateInteractionRequest, InputShapeError, normalize_input
from ..schema.steps import Step
from ..store.base import Store, StoredInteraction
from ..store.replicas import CANCEL_CHANNEL
from ..telemetry import Telemetry
from ..tools.toolbox import Toolbox
from ..webhooks import Webhooks
from .agents import agent_not_found, check_agent_program
from .ending import no_end_hook
from .executor import Executor
from .history import chained_history, verify_input
from .quota import OwnerUsage
from .ratelimit import RunSlots, TokenBuckets
from .recipe import RunRecipe
from .remote import RemoteRuns
from .render import render_folded, render_record, render_run
from .replay import stored_stream
from .run import Job, Run
from .signatures import SHARED_KEY_NAME, ThoughtSigner
from .speaking import audio_output
from .validate import check_capabilities, check_request_shape

logger = logging.getLogger(__name__)

# Request fields that the Interaction resource echoes back.
ECHO_FIELDS = frozenset(
    {
        "system_instruction",
        "tools",
        "generation_config",
        "response_format",
        "response_mime_type",
        "response_modalities",
        "safety_settings",
        "labels",
        "webhook_config",
        "agent",
        "agent_config",
    }
)
_steps = TypeAdapter(list[Step])
_READY_STORE_SECONDS = 2.0  # how long /readyz waits for the database
_COUNT_REFRESH_SECONDS = 5.0
_RUNNING = ("in_progress", "queued")


class InteractionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        log: MemoryEventLog,
        registry: BackendRegistry,
        signer: ThoughtSigner,
        toolbox: Toolbox,
        clock: Callable[[], float] = time.time,
        webhooks: Webhooks | None = None,
        key_candidate: str | None = None,
    ) -> None:
        self.settings = settings
        self._key_candidate = key_candidate  # the signing key to share if the database keeps none yet
        self.webhooks = webhooks
        self.toolbox = toolbox
        self.store = store
        self.log = log
        self.registry = registry
        self.signer = signer
        self.clock = clock
        ended = webhooks.interaction_ended if webhooks is not None else no_end_hook
        self.metrics = Metrics()
        self.telemetry = Telemetry(settings.telemetry)
        self.metrics.watch_runs(lambda: list(self.executor.runs.values()))
        if webhooks is not None:
            webhooks.deliverer.attempted = lambda outcome: self.metrics.deliveries.labels(outcome).inc()
        self.executor = Executor(
            settings, store, log, registry, signer, toolbox, clock, ended, self.metrics, self.telemetry
        )
        self.remote = RemoteRuns(store, self._stored_log)
        self._counts = OwnerUsage(store.usage, _COUNT_REFRESH_SECONDS)
        limits = settings.limits
        self._buckets = TokenBuckets(limits.create_rate_per_second, limits.create_burst)
        self._slots = RunSlots(limits.max_concurrent_runs)
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False

    @property
    def runs(self) -> dict[str, Run]:
        return self.executor.runs

    def _new_key(self) -> str:
        return self._key_candidate or secrets.token_hex(32)

    # ---- what other replicas say (store.Listener) ---------------------------------------------------

    def notified(self, channel: str, payload: str) -> None:
        if channel == CANCEL_CHANNEL:
            self.executor.cancel_requested(payload)
        else:
            self.remote.notified(payload)

    def reconnected(self) -> None:
        self.remote.reconnected()

    def _stored_log(self, interaction_id: str, owner: str) -> StoredRest:
        return lambda position, offset: self.executor.stored_rest(interaction_id, owner, position, offset)

    async def start(self) -> None:
        await self.store.start()
        if not self.settings.signing_key:
            self.signer.rekey((await self.store.shared_secret(SHARED_KEY_NAME, self._new_key())).encode())
        if self.webhooks is not None:
            await self.webhooks.start()  # before a run taken over, or recovered, ends
        self.store.subscribe(self)
        self.remote.start()
        await self.executor.take_over()
        stores = self.toolbox.file_stores
        if stores is not None:  # documents whose indexing server died are failed (at start, then as it sweeps)
            stores.serve_as(self.executor.server_id, self._alive_servers)
        self._sweeper = asyncio.create_task(self._sweep_forever())
        self._started = True

    async def readiness(self) -> str | None:
        """Why this server should not be sent traffic now (GET /readyz), or None."""
        if not self._started:
            return "starting"
        if self.executor.closing:
            return "shutting down"
        try:
            async with asyncio.timeout(_READY_STORE_SECONDS):
                await self.store.lapsed(self.clock())  # a read: the database answers
        except Exception as exc:
            return f"the store does not answer: {type(exc).__name__}: {exc}"
        return None

    def begin_shutdown(self) -> None:
        """Refuse new runs and cancel the running ones, at once."""
        self.executor.begin_shutdown()

    async def stop_runs(self) -> None:
        """Shutting down: refuse new runs, cancel the running ones and wait until each is stored, which also
        ends their streams and non-stream requests."""
        await self.executor.stop_all()

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        self.remote.stop()
        await self.stop_runs()
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.registry.aclose()
        await self.executor.speech.aclose()
        self.toolbox.close()
        await self.store.close()
        self.telemetry.shutdown()

    # ---- create -------------------------------------------------------------------------------------

    async def create(self, req: CreateInteractionRequest, owner: str, api_version: str) -> Run:
        """The per-key rate and concurrency limits around the create itself: the run holds one of its key's
        slots from here until it ends."""
        # The slot first: a create refused for want of one (and the SDKs' retries of it) spends no rate token.
        if not self._slots.take(owner):
            raise too_many_requests(
                f"too many interactions running: this key has {self._slots.limit} running at once "
                "(limits.max_concurrent_runs); retry once one has ended",
                1.0,
            )
        wait = self._buckets.take(owner)
        if wait:
            self._slots.give_back(owner)
            rate = self.settings.limits.create_rate_per_second
            raise too_many_requests(
                f"too many requests: this key may create {rate:g} interactions a second "
                "(limits.create_rate_per_second); retry after the time in Retry-After",
                wait,
            )
        try:
            run = await self._create(req, owner, api_version)
        except BaseException:
            self._slots.give_back(owner)
            raise
        assert run.task is not None
        run.task.add_done_callback(lambda _: self._slots.give_back(owner))
        return run

    async def _create(self, req: CreateInteractionRequest, owner: str, api_version: str) -> Run:
        if self.executor.closing:
            raise _shutting_down()
        check_request_shape(req)
        if req.agent is not None:
            route = await self._agent_route(req, api_version)
        else:
            route = self._route(req.model or "", api_version)
        _check_input_items(req.input, self.settings.limits.max_input_items)
        try:
            inputs = normalize_input(req.input)
        except InputShapeError as exc:
            raise invalid_argument(str(exc)) from exc
        except ValidationError as exc:
            shown = req.input if isinstance(req.input, list) else [req.input]  # as normalize_input saw it
            raise validation_error(exc, shown, "input") from exc
        if not inputs and req.previous_interaction_id is None:
            raise invalid_argument("'input' is required")
        check_capabilities(req, route.backend.capabilities, route.name, inputs, self.toolbox.problem)
        audio_output(req, self.executor.speech)  # a 400 for audio this server cannot speak
        now = self.clock()
        history: list[Step] = []
        if req.previous_interaction_id is not None:
            self._check_not_running(req.previous_interaction_id, owner)
            limits = self.settings.limits
            history = await chained_history(
                self.store, owner, req.previous_interaction_id, now, limits.max_chain_length, limits.max_chain_bytes
            )
        verify_input(inputs, history, self.signer)
        store = req.store is not False
        recipe = self._recipe(req, route, owner, inputs, store, now)
        size = 0
        if store:
            size = _stored_size(recipe.echo) + _json_size(recipe.request)  # the row keeps both
            await self._check_quota(owner, now, size)
        caps = route.backend.capabilities
        given = await self.executor.inputs.given(history + inputs, caps, route.name, len(history))
        try:
            job = self.executor.prepare(recipe, given, inputs, req)
        except BackendError as exc:
            status = "FAILED_PRECONDITION" if exc.code == "failed_precondition" else "INVALID_ARGUMENT"
            raise ApiError(400, exc.message, status) from exc
        if store:
            self._counts.added(owner, size)
        return self._launch(job)

    async def _agent_route(self, req: CreateInteractionRequest, api_version: str) -> Route:
        """The model an agent thinks with; an agent without the search (or, asked for charts, the sandbox) it
        needs is refused."""
        agent = self.executor.agents.resolve(req.agent or "")
        if agent is None:
            raise agent_not_found(req.agent or "", api_version)
        check_agent_program(agent, req.agent_config)
        problem = self.toolbox.problem("google_search")
        if problem is not None:
            raise failed_precondition(f"agent {agent.name!r} needs the google_search tool, unavailable here: {problem}")
        if (req.agent_config or {}).get("visualization") == "auto":
            problem = await self.toolbox.chart_problem()
            if problem is not None:
                raise failed_precondition(
                    f"'agent_config.visualization' 'auto' needs charts, unavailable here: {problem}"
                )
        return self._route(agent.model, api_version)

    def _route(self, model: str, api_version: str) -> Route:
        route = self.registry.resolve(model)
        if route is None:
            raise not_found(
                f"models/{model.removeprefix('models/')} is not found for API version {api_version}, "
                "or is not supported for interactions. List the served models with GET /"
                f"{api_version}/models."
            )
        return route

    async def _check_quota(self, owner: str, now: float, size: int) -> None:
        """Storage quotas are 400 FAILED_PRECONDITION, not 429: only a delete frees them, and the SDKs retry a
        429 four times. ``size``: what this create's input will take. Outputs count once they are stored."""
        settings = self.settings.store
        usage = await self._counts.get(owner, now)
        if usage.rows >= settings.max_interactions_per_owner:
            raise failed_precondition(
                f"storage quota reached: this key already stores {settings.max_interactions_per_owner} "
                "interactions; delete some, send 'store': false, or raise store.max_interactions_per_owner"
            )
        if usage.bytes + size > settings.max_bytes_per_owner:
            raise failed_precondition(
                f"storage quota reached: this key stores {usage.bytes} bytes and this interaction's input "
                f"would add about {size}, over {settings.max_bytes_per_owner} (store.max_bytes_per_owner); "
                "delete some interactions, send 'store': false, or raise store.max_bytes_per_owner"
            )

    def _recipe(
        self, req: CreateInteractionRequest, route: Route, owner: str, inputs: list[Step], store: bool, now: float
    ) -> RunRecipe:
        echo = req.model_dump(mode="json", include=set(ECHO_FIELDS), exclude_none=True, by_alias=True)
        echo["input"] = req.input
        limits = self.settings
        return RunRecipe(
            interaction_id=new_interaction_id(),
            owner=owner,
            model=req.model or route.name,
            route=route.name,
            store=store,
            background=bool(req.background),
            created_at=now,
            expires_at=now + limits.store.retention_seconds,
            previous_interaction_id=req.previous_interaction_id,
            request=req.model_dump(mode="json", exclude={"input", *ECHO_FIELDS}, exclude_none=True, by_alias=True),
            echo=echo,
            input_steps=[s.wire() for s in inputs],
            timeout=limits.limits.run_timeout_seconds,
            max_tool_rounds=limits.tools.max_rounds,
            tool_budget=limits.tools.time_budget_seconds,
            agent=req.agent.removeprefix("agents/") if req.agent is not None else None,
        )

    def _launch(self, job: Job) -> Run:
        if self.executor.closing:  # create awaited the store since it last looked: stop_runs may have passed
            raise _shutting_down()
        return self.executor.start(job)

    # ---- read ---------------------------------------------------------------------------------------

    def _check_not_running(self, interaction_id: str, owner: str) -> None:
        """A run's created event can reach its client before its row is committed: ask the run, not the store."""
        run = self._live(interaction_id, owner)
        if run is not None and not run.finished.is_set():
            raise failed_precondition(f"interaction {interaction_id!r} is still in_progress; continue it once it ends")

    def _live(self, interaction_id: str, owner: str) -> Run | None:
        run = self.runs.get(interaction_id)
        if run is None or run.spec.owner != owner or not run.spec.store:
            return None
        return run

    async def _stored(self, interaction_id: str, owner: str) -> StoredInteraction:
        record = await self.store.get(interaction_id, owner, self.clock())
        if record is None:
            raise _not_found(interaction_id)
        return record

    async def get(self, interaction_id: str, owner: str, include_input: bool = False) -> Interaction:
        run = self._live(interaction_id, owner)
        if run is not None:
            return render_run(run, include_input)
        record = await self._stored(interaction_id, owner)
        if record.status in _RUNNING:  # on another server: as far as its log is committed
            frames = await self.remote.frames(interaction_id)
            if frames is not None:
                return render_folded(record, frames, include_input)
            record = await self._stored(interaction_id, owner)  # it has just ended
        return render_record(record, include_input)

    def result(self, run: Run) -> Interaction:
        self.check_started(run)
        return render_run(run, include_input=False)

    def check_started(self, run: Run) -> None:
        """A run that shutdown cancelled before it ran a line logged and stored nothing: its create is refused
        like one that came a moment later (503, which the SDKs retry), not answered with an empty resource."""
        if run.abandoned:
            raise _shutting_down()

    async def events(self, interaction_id: str, owner: str, last_event_id: str | None) -> AsyncGenerator[bytes, None]:
        """The SSE frames after ``last_event_id``, following the run if it is still going."""
        after = _event_position(last_event_id)
        run = self._live(interaction_id, owner)
        if run is not None and self.log.has(interaction_id):
            _check_position(after, self.log.length(interaction_id), last_event_id)
            return self._follow(interaction_id, after)
        size = await self.store.events_size(interaction_id, owner, self.clock())
        if size == 0:  # no stored log: the run has not ended, and executes on another server
            server = self.settings.server
            try:
                remote = await self.remote.follow(
                    interaction_id, owner, after, server.keepalive_seconds, server.stream_coalesce_seconds
                )
            except IndexError:
                raise _not_an_event(last_event_id) from None
            if remote is not None:
                return remote
            size = await self.store.events_size(interaction_id, owner, self.clock())  # it has just ended
        stream = None
        if size is not None:
            try:
                stream = await stored_stream(self.store, interaction_id, size, after)
            except StreamCut:  # deleted since
                size = None
        if size is None:
            raise _not_found(interaction_id)
        if stream is None:
            raise _not_an_event(last_event_id)
        return stream

    def creation_stream(self, run: Run) -> AsyncGenerator[bytes, None]:
        return self._follow(run.id, 0)

    def _follow(self, interaction_id: str, after: int) -> AsyncGenerator[bytes, None]:
        server = self.settings.server
        return self.log.read(interaction_id, after, server.keepalive_seconds, server.stream_coalesce_seconds)

    # ---- cancel / delete ----------------------------------------------------------------------------

    async def cancel(self, interaction_id: str, owner: str) -> Interaction:
        run = self._live(interaction_id, owner)
        if run is None:
            record, asked = await self._stop_elsewhere(interaction_id, owner)
            if not asked or record.status != "cancelled":
                raise failed_precondition(
                    f"interaction {interaction_id!r} is {record.status}; only a running interaction can be cancelled"
                )
            return render_record(record, include_input=False)
        await self.stop_run(run)
        interaction = render_run(run, include_input=False)
        if interaction.status != "cancelled":  # it had already ended on its own, and was storing its result
            raise failed_precondition(
                f"interaction {interaction_id!r} is {interaction.status}; only a running interaction can be cancelled"
            )
        return interaction

    async def stop_run(self, run: Run) -> None:
        await self.executor.stop(run)

    async def _stop_elsewhere(self, interaction_id: str, owner: str) -> tuple[StoredInteraction, bool]:
        """Cancel a run that executes on another server (or on none, until one takes it over), and wait for
        its end: the record as it is then, and whether the cancel was asked (the run had not ended). 503 if
        it has not ended in time."""
        record = await self._stored(interaction_id, owner)
        if record.status not in _RUNNING or not await self.store.request_cancel(interaction_id, owner, self.clock()):
            return await self._stored(interaction_id, owner), False
        wait = self.settings.limits.run_lease_seconds + self.settings.store.replica_grace_seconds
        if not await self.remote.wait_end(interaction_id, owner, wait):
            raise ApiError(
                503,
                f"interaction {interaction_id!r} runs on a server that has not answered the cancel within {wait:g} s; "
                "it ends cancelled once that server, or the one that takes its runs over, sees it",
            )
        return await self._stored(interaction_id, owner), True

    async def delete(self, interaction_id: str, owner: str) -> None:
        run = self._live(interaction_id, owner)
        if run is not None:
            await self.stop_run(run)
        else:
            with contextlib.suppress(ApiError):  # a 404 comes from the delete; a run gone quiet is deleted anyway
                await self._stop_elsewhere(interaction_id, owner)
        if not await self.store.delete(interaction_id, owner):
            raise not_found(f"interaction {interaction_id!r} was not found")
        self._counts.forget(owner)

    # ---- housekeeping -------------------------------------------------------------------------------

    async def _alive_servers(self) -> set[str]:
        return (await self.store.leases())[1]

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await self.store.sweep(self.clock())
                if removed:
                    logger.info("retention: deleted %d expired interactions", removed)
                if self.toolbox.file_stores is not None and await self.toolbox.file_stores.sweep_orphans():
                    logger.warning("file_search: documents whose indexing server stopped were marked failed")
            except Exception:
                logger.exception("retention sweep failed")
            await asyncio.sleep(self.settings.store.sweep_interval_seconds)


def _event_position(last_event_id: str | None) -> int:
    if last_event_id is None:
        return 0
    if not (last_event_id.isascii() and last_event_id.isdigit()):
        raise invalid_argument(f"'last_event_id' {last_event_id!r} is not an event id of this server")
    digits = last_event_id.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18  # beyond every log; int() refuses > 4300 digits


def _stored_size(echo: dict[str, Any]) -> int:
    """About the bytes a create's row starts with: every echoed request field, and the input twice (as sent,
    and as steps)."""
    fields = {name: value for name, value in echo.items() if name != "input"}
    return _json_size(fields) + 2 * _json_size(echo.get("input"))


def _json_size(value: Any) -> int:
    """About the bytes of ``value`` as JSON; a string (the usual big input) without writing it out."""
    if isinstance(value, str):
        return (len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))) + 2
    return len(jsontext.dumps_bytes(value))


def _shutting_down() -> ApiError:
    return ApiError(503, "The server is shutting down; retry on another one or once it is back.")


def _check_input_items(raw: Any, limit: int) -> None:
    """Each item costs microseconds on the event loop, where every other stream waits: a body of a million
    empty blocks, well under the size limit, held the server for seconds. Every list's items count (steps,
    blocks, summaries, annotations, search results), except inside a function's free-form arguments and
    result, which are not validated item by item."""
    count = 0
    stack: list[Any] = [raw if isinstance(raw, list) else [raw]]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            count += len(value)
            if count > limit:
                raise invalid_argument(
                    f"'input' has more than {limit} steps, content blocks and other items (limits.max_input_items)"
                )
            stack.extend(value)
        elif isinstance(value, dict):
            free = ("arguments", "result") if value.get("type") == "function_result" else ("arguments",)
            stack.extend(item for key, item in value.items() if key not in free)


def _check_position(after: int, available: int, last_event_id: str | None) -> None:
    if after > available:
        raise _not_an_event(last_event_id)


def _not_found(interaction_id: str) -> ApiError:
    return not_found(f"interaction {interaction_id!r} was not found")


def _not_an_event(last_event_id: str | None) -> ApiError:
    return invalid_argument(f"'last_event_id' {last_event_id!r} is not an event of this interaction")
