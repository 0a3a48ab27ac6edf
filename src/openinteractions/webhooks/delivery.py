"""The delivery worker: claims due outbox rows, signs each body per Standard Webhooks, POSTs it through the
egress point under the address policy of model-chosen URLs, and records the outcome.

At least once: a row is marked delivered only after a 2xx answer. A process that dies mid-delivery leaves its
lease, which expires, and the row is claimed again (by any process on the database). ``webhook-id`` is the
row's message id, the same on every retry, so receivers can drop duplicates; ``webhook-timestamp`` and the
signatures are made afresh for each attempt, so that a retry a day later still passes the receivers' 5-minute
freshness check. A failed attempt is retried after an exponential backoff with jitter until the event is older
than the retry window; a registered webhook whose attempts fail too many times in a row is disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ..config import WebhooksSettings
from ..egress import Egress, Refused, Resolver, system_resolver
from ..tools.net import AddressPolicy
from . import db
from . import secrets as signing

logger = logging.getLogger(__name__)

RunDb = Callable[..., Awaitable[Any]]  # runs a db.* function with a connection in a worker thread
OwnerSecrets = Callable[[str], Awaitable[str]]
_ANSWER_BYTES = 1024  # of a failed answer's body, kept as its error
_SWEEP_SECONDS = 60.0
USER_AGENT = "OpenInteractions-webhooks/0.1"


class Deliverer:
    def __init__(
        self,
        settings: WebhooksSettings,
        run_db: RunDb,
        owner_secrets: OwnerSecrets,
        on_disabled: Callable[[str], None],
        clock: Callable[[], float],
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self._db = run_db
        self._owner_secrets = owner_secrets
        self._on_disabled = on_disabled
        self._clock = clock
        self.egress = Egress("webhooks", AddressPolicy(settings.allow_networks), resolver)
        self._client: httpx.AsyncClient | None = None
        self._instance = "w" + secrets.token_hex(6)  # this process's lease tokens start with it
        self._claims = 0
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self._disable = db.DisablePolicy(settings.disable_after_failures, settings.disable_after_seconds)
        self.attempted: Callable[[str], None] = lambda outcome: None  # delivered, retrying or failed (metrics)

    def start(self) -> None:
        limits = httpx.Limits(max_connections=self.settings.max_concurrent_deliveries)
        self._client = self.egress.client(timeout=self.settings.timeout_seconds, follow_redirects=False, limits=limits)
        self._loop_task = asyncio.create_task(self._forever(), name="webhook deliveries")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._db(db.release, self._instance + ":")
        except Exception:
            logger.exception("could not give back the leases of interrupted deliveries (they expire by themselves)")
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        self._wake.set()

    @property
    def _lease_seconds(self) -> float:
        # An attempt is bounded by timeout_seconds; recording its outcome is a short transaction.
        return 2 * self.settings.timeout_seconds + 5.0

    async def _forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._sweep()
                while await self._claim_some():
                    pass
            except Exception:
                logger.exception("webhook outbox: claiming failed; trying again in %g s", self.settings.poll_seconds)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_seconds):
                    await self._wake.wait()

    async def _claim_some(self) -> bool:
        """Start deliveries for the free slots; True if every slot was filled (more may be due)."""
        free = self.settings.max_concurrent_deliveries - len(self._tasks)
        if free <= 0:
            return False
        now = self._clock()
        self._claims += 1
        token = f"{self._instance}:{self._claims}"
        rows = await self._db(db.claim, now, free, now + self._lease_seconds, token)
        for row in rows:
            task = asyncio.create_task(self._deliver(row, token))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(rows) == free

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a free slot

    async def _sweep(self) -> None:
        now = self._clock()
        if now - self._last_sweep < _SWEEP_SECONDS:
            return
        self._last_sweep = now
        s = self.settings
        await self._db(db.sweep, now, s.delivery_retention_seconds, s.retry_window_seconds)

    async def _deliver(self, row: db.Claimed, token: str) -> None:
        try:
            outcome = await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not keep the row leased forever: it fails and is retried
            logger.exception("webhook delivery %s failed unexpectedly", row.id)
            outcome = self._failure(row, self._clock(), None, f"internal error: {type(exc).__name__}")
        self.attempted("delivered" if outcome.delivered else "retrying" if outcome.next_attempt_at else "failed")
        try:
            disabled = await self._db(db.record, row, token, outcome, self._disable)
        except Exception:
            logger.exception("could not record the delivery of %s; its lease will expire and it goes again", row.id)
            return
        if disabled and row.webhook_id is not None:
            logger.warning("webhook %s disabled: its deliveries failed %d times in a row over %g s", row.webhook_id,
                           self._disable.failures, self._disable.seconds)  # fmt: skip
            self._on_disabled(row.webhook_id)
        if outcome.next_attempt_at is not None:
            asyncio.get_running_loop().call_later(max(0.0, outcome.next_attempt_at - self._clock()), self.wake)

    async def _attempt(self, row: db.Claimed) -> db.Outcome:
        stored = row.secrets if row.secrets is not None else await self._owner_secrets(row.owner)
        now = self._clock()
        moment = datetime.fromtimestamp(now, UTC)
        body = row.payload.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": row.message_id,
            "webhook-timestamp": str(math.floor(now)),
            "webhook-signature": signing.signature(stored, now, row.message_id, moment, body),
        }
        if not row.uri.startswith("https://") and not self.settings.allow_http:
            return self._failure(row, now, None, "refused: plain http and webhooks.allow_http is off")
        assert self._client is not None
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                request = self._client.build_request("POST", row.uri, content=body, headers=headers)
                response = await self._client.send(request, stream=True)
                try:
                    answer = await _head_of_body(response)
                finally:
                    await response.aclose()
        except Refused as refused:
            return self._failure(row, now, None, f"refused: {refused.reason}")
        except TimeoutError:
            return self._failure(row, now, None, f"no answer within {self.settings.timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            return self._failure(row, now, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= response.status_code < 300:
            return db.Outcome(now, True, response.status_code, None, None)
        return self._failure(row, now, response.status_code, f"HTTP {response.status_code}: {answer}".strip())

    def _failure(self, row: db.Claimed, now: float, status: int | None, error: str) -> db.Outcome:
        s = self.settings
        attempts = row.attempts + 1
        delay = min(s.retry_max_seconds, s.retry_initial_seconds * 2 ** min(attempts - 1, 60))
        delay *= random.uniform(0.8, 1.2)
        retry_at: float | None = now + delay
        if now + delay > row.created_at + s.retry_window_seconds:
            retry_at = None
            error = f"{error} (given up after {attempts} attempts)"
        return db.Outcome(now, False, status, error[:2000], retry_at)


async def _head_of_body(response: httpx.Response) -> str:
    """The first bytes of an answer, for a failure's error; the rest is not read."""
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk
        if len(head) >= _ANSWER_BYTES:
            break
    return head[:_ANSWER_BYTES].decode("utf-8", "replace")
