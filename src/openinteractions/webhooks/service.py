"""Webhooks: the registered webhooks of each owner (create, list, get, update, delete, ping, rotate), the
owner's secret for the URIs of a request's ``webhook_config``, the hook a run calls when it ends, and the
delivery worker.

The hook (``interaction_ended``) writes the run's events into the outbox through the store's write queue, in
the step that queues the run's final state, so both commit in one transaction: an interaction whose end is
stored always has its events in the outbox, whenever the process dies. To decide that without a query, each
process keeps the enabled webhooks in memory, re-read every ``webhooks.refresh_seconds`` for the changes of
other processes on a shared database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets as token
import string
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import IntegrityError

from ..config import WebhooksSettings
from ..egress import Resolver, system_resolver
from ..engine.ending import RunEnding
from ..errors import failed_precondition, invalid_argument, not_found
from ..store.sql import SqlStore
from . import db, secrets, wire
from .delivery import Deliverer

logger = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_lowercase + string.digits
_LIST_DEFAULT, _LIST_MAX = 50, 1000


def new_webhook_id() -> str:
    return "".join(token.choice(_ID_ALPHABET) for _ in range(36))


def _new_row_id() -> str:
    return token.token_urlsafe(18)


class Webhooks:
    def __init__(
        self,
        settings: WebhooksSettings,
        store: SqlStore,
        clock: Callable[[], float] = time.time,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="webhooks-db")
        # owner -> {webhook id: subscribed events} of the enabled webhooks
        self._subscriptions: dict[str, dict[str, frozenset[str]]] = {}
        self._changes = 0  # local changes to _subscriptions, so that a re-read started before one is dropped
        self._owner_locks: dict[str, asyncio.Lock] = {}
        self.deliverer = Deliverer(settings, self._run, self._signing_secrets, self._forget, clock, resolver)
        self._refresher: asyncio.Task[None] | None = None

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        def call() -> Any:
            with self._store.engine.begin() as conn:
                return work(conn, *args)

        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """After the store has started and before any run can end."""
        await self._run(db.create)
        await self._refresh()
        self.deliverer.start()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="webhook refresher")

    async def stop(self) -> None:
        """After the last run has ended, before the store closes."""
        if self._refresher is not None:
            self._refresher.cancel()
        await self.deliverer.close()
        self._threads.shutdown()

    async def _refresh(self) -> None:
        changes = self._changes
        subscriptions: dict[str, dict[str, frozenset[str]]] = {}
        for owner, webhook_id, events in await self._run(db.enabled_subscriptions):
            subscriptions.setdefault(owner, {})[webhook_id] = frozenset(events)
        if changes == self._changes:  # else it may predate a change made here meanwhile: the next one will do
            self._subscriptions = subscriptions

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_seconds)
            try:
                await self._refresh()
            except Exception:
                logger.exception("could not re-read the registered webhooks")

    def _remember(self, row: dict[str, Any]) -> None:
        self._changes += 1
        if row["state"] == "enabled":
            events = frozenset(json.loads(row["subscribed_events"]))
            self._subscriptions.setdefault(row["owner"], {})[row["id"]] = events
        else:
            self._forget(row["id"], row["owner"])

    def _forget(self, webhook_id: str, owner: str | None = None) -> None:
        self._changes += 1
        for own, hooks in self._subscriptions.items():
            if owner in (None, own):
                hooks.pop(webhook_id, None)

    # ---- the hook into runs ----------------------------------------------------------------------------

    def interaction_ended(self, ending: RunEnding) -> None:
        """Queue the outbox rows of a run's end, for the transaction of its final state (queued next, in the
        same step). Never raises: a run must be stored whatever happens here."""
        try:
            rows = self._rows(ending)
            if rows:
                queued = self._store.queue_rows(db.OUTBOX_INSERT, rows)
                queued.add_done_callback(self._queued)
        except Exception:
            logger.exception("could not queue the webhook events of interaction %s", ending.interaction_id)

    def _queued(self, future: asyncio.Future[None]) -> None:
        if future.exception() is not None:
            logger.error("the webhook events of a run were not stored: %s", future.exception())
        self.deliverer.wake()

    def _rows(self, ending: RunEnding) -> list[tuple[Any, ...]]:
        event = wire.event_of(ending.status)
        if event is None:
            return []
        uris = list(dict.fromkeys((ending.webhook_config or {}).get("uris") or []))
        targets: list[tuple[str | None, str | None]]
        if uris:  # the request's URIs replace the registered webhooks
            targets = [(None, uri) for uri in uris]
        else:
            hooks = self._subscriptions.get(ending.owner, {})
            targets = [(webhook_id, None) for webhook_id, events in hooks.items() if event in events]
        if not targets:
            return []
        now = self._clock()
        payload = wire.interaction_payload(event, ending, now)
        message_id = "msg_" + token.token_urlsafe(18)
        owner, interaction_id = ending.owner, ending.interaction_id
        return [(_new_row_id(), message_id, owner, event, interaction_id, webhook_id, uri, payload, now, now)
                for webhook_id, uri in targets]  # fmt: skip

    def check_config(self, config: Any) -> None:
        wire.check_config(config, self.settings)

    # ---- registered webhooks ---------------------------------------------------------------------------

    def _lock(self, owner: str) -> asyncio.Lock:
        return self._owner_locks.setdefault(owner, asyncio.Lock())

    async def create(self, owner: str, body: wire.WebhookInput) -> dict[str, Any]:
        uri = wire.check_uri(body.uri, self.settings, "uri")
        events = wire.check_events(body.subscribed_events, "subscribed_events")
        now = self._clock()
        secret, stored = secrets.initial(now)
        row = {"id": new_webhook_id(), "owner": owner, "name": body.name, "uri": uri,
               "subscribed_events": json.dumps(events), "state": "enabled", "secrets": stored,
               "created_at": now, "updated_at": now}  # fmt: skip
        async with self._lock(owner):  # the count and the insert, for this process's requests
            if await self._run(db.count_webhooks, owner) >= self.settings.max_webhooks_per_owner:
                raise failed_precondition(
                    f"this key has {self.settings.max_webhooks_per_owner} webhooks already "
                    "(webhooks.max_webhooks_per_owner); delete one first"
                )
            await self._run(db.insert_webhook, row)
        self._remember(row)
        return wire.resource(row, now, new_secret=secret)

    async def list_all(self, owner: str, page_size: int | None, page_token: str | None) -> dict[str, Any]:
        size, offset = _page(page_size, page_token)
        rows = await self._run(db.list_webhooks, owner, offset, size + 1)
        now = self._clock()
        out: dict[str, Any] = {"webhooks": [wire.resource(row, now) for row in rows[:size]]}
        if len(rows) > size:
            out["next_page_token"] = str(offset + size)
        return out

    async def get(self, owner: str, webhook_id: str) -> dict[str, Any]:
        return wire.resource(await self._row(owner, webhook_id), self._clock())

    async def _row(self, owner: str, webhook_id: str) -> dict[str, Any]:
        row = await self._run(db.get_webhook, owner, webhook_id)
        if row is None:
            raise not_found(f"webhook {webhook_id!r} was not found")
        return dict(row)

    async def update(
        self, owner: str, webhook_id: str, body: wire.WebhookUpdate, update_mask: str | None
    ) -> dict[str, Any]:
        fields = _mask(update_mask, body)
        values: dict[str, Any] = {}
        if "uri" in fields:
            if body.uri is None:
                raise invalid_argument("'uri' is required: a webhook always has one")
            values["uri"] = wire.check_uri(body.uri, self.settings, "uri")
        if "subscribed_events" in fields:
            events = wire.check_events(body.subscribed_events or [], "subscribed_events")
            values["subscribed_events"] = json.dumps(events)
        if "name" in fields:
            values["name"] = body.name
        if "state" in fields:
            if body.state not in ("enabled", "disabled"):
                raise invalid_argument("'state' can be set to 'enabled' or 'disabled'")
            values["state"] = body.state
            if body.state == "enabled":
                values.update(consecutive_failures=0, failing_since=None)
        values["updated_at"] = self._clock()
        if not await self._run(db.update_webhook, owner, webhook_id, values):
            raise not_found(f"webhook {webhook_id!r} was not found")
        row = await self._row(owner, webhook_id)
        self._remember(row)
        if values.get("state") == "enabled":
            self.deliverer.wake()  # its waiting events go now
        return wire.resource(row, self._clock())

    async def delete(self, owner: str, webhook_id: str) -> None:
        if not await self._run(db.delete_webhook, owner, webhook_id):
            raise not_found(f"webhook {webhook_id!r} was not found")
        self._forget(webhook_id, owner)

    async def ping(self, owner: str, webhook_id: str) -> None:
        """A ``webhook.ping`` event, delivered (and retried) like any other."""
        row = await self._row(owner, webhook_id)
        if row["state"] != "enabled":
            raise failed_precondition(f"webhook {webhook_id!r} is {row['state']}; enable it to ping it")
        now = self._clock()
        values = (_new_row_id(), "msg_" + token.token_urlsafe(18), owner, wire.PING, None, webhook_id, None,
                  wire.ping_payload(webhook_id, now), now, now)  # fmt: skip
        await self._store.queue_rows(db.OUTBOX_INSERT, [values])
        self.deliverer.wake()

    async def rotate(self, owner: str, webhook_id: str, body: wire.RotateRequest) -> dict[str, Any]:
        async with self._lock(owner):
            row = await self._row(owner, webhook_id)
            now = self._clock()
            secret, stored = secrets.rotate(row["secrets"], now, body.revocation_behavior)
            await self._run(db.update_webhook, owner, webhook_id, {"secrets": stored, "updated_at": now})
        return {"secret": secret}

    # ---- the owner's secret, for webhook_config.uris ---------------------------------------------------

    async def owner_secret(self, owner: str) -> dict[str, Any]:
        stored = await self._signing_secrets(owner)
        now = self._clock()
        return {"secret": secrets.active(stored, now)[0]["secret"], "signing_secrets": secrets.shown(stored, now)}

    async def rotate_owner_secret(self, owner: str, body: wire.RotateRequest) -> dict[str, Any]:
        async with self._lock(owner):
            stored = await self._signing_secrets(owner)
            now = self._clock()
            secret, rotated = secrets.rotate(stored, now, body.revocation_behavior)
            await self._run(db.put_owner_secrets, owner, rotated, now, True)
        return {"secret": secret}

    async def _signing_secrets(self, owner: str) -> str:
        """The owner's stored secrets, made on first use (by whichever process gets there first)."""
        stored = await self._run(db.get_owner_secrets, owner)
        if stored is not None:
            return str(stored)
        _, stored = secrets.initial(self._clock())
        try:
            await self._run(db.put_owner_secrets, owner, stored, self._clock(), False)
        except IntegrityError:
            stored = await self._run(db.get_owner_secrets, owner)
        return str(stored)

    # ---- delivery state ------------------------------------------------------------------------------

    async def deliveries(
        self,
        owner: str,
        webhook_id: str | None,
        interaction_id: str | None,
        page_size: int | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        size, offset = _page(page_size, page_token)
        rows = await self._run(db.deliveries, owner, webhook_id, interaction_id, offset, size + 1)
        out: dict[str, Any] = {"deliveries": [wire.delivery(row) for row in rows[:size]]}
        if len(rows) > size:
            out["next_page_token"] = str(offset + size)
        return out


def _page(page_size: int | None, page_token: str | None) -> tuple[int, int]:
    size = page_size or _LIST_DEFAULT
    if size < 0:
        raise invalid_argument("'page_size' must not be negative")
    size = min(size, _LIST_MAX)
    if page_token is None or page_token == "":
        return size, 0
    if not page_token.isdigit() or len(page_token) > 12:
        raise invalid_argument(f"'page_token' {page_token!r} is not a page token of this server")
    return size, int(page_token)


def _mask(update_mask: str | None, body: wire.WebhookUpdate) -> set[str]:
    """The fields an update changes: those its mask names, or, without a mask, those its body sets."""
    if update_mask is None or update_mask.strip() == "":
        return set(body.model_fields_set)
    fields = {f.strip() for f in update_mask.split(",") if f.strip()}
    unknown = fields - set(wire.WebhookUpdate.model_fields)
    if unknown:
        raise invalid_argument(f"'update_mask' names fields a webhook update cannot change: {sorted(unknown)}")
    return fields
