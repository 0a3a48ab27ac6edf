"""Webhooks end to end: a real server on loopback, driven through google-genai's ``client.webhooks`` and
``interactions.create(webhook_config=...)``, delivering to receivers on loopback that verify every signature
with the standardwebhooks library. No sleep synchronises anything: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai._interactions import APIStatusError as GenAiError
from sqlalchemy import create_engine, select
from standardwebhooks import Webhook, WebhookVerificationError

import netguard
from live import LiveServer, free_port
from pg import scratch_database, url

MODEL = "gemini-3-flash-preview"
KEY_A, KEY_B = "key-alpha-0001", "key-beta-0002"
FAST = {
    "allow_http": True,
    "allow_networks": ["127.0.0.1/32"],
    "retry_initial_seconds": 0.05,
    "retry_max_seconds": 0.3,
    "retry_window_seconds": 60.0,
    "timeout_seconds": 2.0,
    "poll_seconds": 0.2,
    "refresh_seconds": 0.2,
}
ALL_EVENTS = ["interaction.completed", "interaction.requires_action", "interaction.failed", "interaction.cancelled"]
BIG_METADATA = {"x": "y" * 2**15}  # over webhooks.max_user_metadata_bytes
LOOKUP = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


def script(*events: dict[str, Any]) -> str:
    return json.dumps({"script": list(events)})


def eventually(condition: Callable[[], Any], timeout: float = 20.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout:g} s")


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    def verify(self, secret: str) -> dict[str, Any]:
        return Webhook(secret).verify(self.body, self.headers)  # type: ignore[no-any-return]


class Receiver:
    """A webhook endpoint on a loopback port of its own. ``answer(delivery)`` picks each status; it can be taken
    down (connections refused) and brought back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Delivery] = []
        self.answer: Callable[[Delivery], int] = lambda delivery: 200
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                delivery = Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver._lock:
                    receiver.received.append(delivery)
                self.send_response(receiver.answer(delivery))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, kind: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.received if kind is None or d.event()["type"] == kind]

    def wait(self, count: int, kind: str | None = None, timeout: float = 20.0) -> list[Delivery]:
        """The distinct messages (by webhook-id, first copies, in order of arrival), once ``count`` have come."""

        def distinct() -> list[Delivery]:
            unique: dict[str, Delivery] = {}
            for delivery in self.events(kind):
                unique.setdefault(delivery.id, delivery)
            return list(unique.values()) if len(unique) >= count else []

        return eventually(distinct, timeout, f"{count} deliveries to {self.url}")  # type: ignore[no-any-return]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("webhooks"),
        {
            "auth": {"api_keys": [KEY_A, KEY_B]},
            "webhooks": FAST,
            f"models.{MODEL}": {"backend": "scripted", "inline": True},
        },
    ).start()
    yield live
    live.stop()


def sdk(server: LiveServer, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": server.url})


@pytest.fixture
def a(server: LiveServer) -> Iterator[genai.Client]:
    client = sdk(server, KEY_A)
    yield client
    for hook in client.webhooks.list().webhooks or []:
        client.webhooks.delete(id=hook.id)


@pytest.fixture
def b(server: LiveServer) -> Iterator[genai.Client]:
    client = sdk(server, KEY_B)
    yield client
    for hook in client.webhooks.list().webhooks or []:
        client.webhooks.delete(id=hook.id)


def raw(server: LiveServer, key: str) -> httpx.Client:
    return server.http(headers={"x-goog-api-key": key})


def deliveries(server: LiveServer, key: str, **filters: str) -> list[dict[str, Any]]:
    with raw(server, key) as http:
        answer = http.get("/v1beta/webhookDeliveries", params=filters)
        assert answer.status_code == 200, answer.text
        return answer.json()["deliveries"]  # type: ignore[no-any-return]


def status_of(error: pytest.ExceptionInfo[GenAiError]) -> int:
    return int(error.value.status_code or 0)


# ---- the resource ---------------------------------------------------------------------------------------


def test_create_list_get_update_delete_and_the_secret_is_shown_once(
    server: LiveServer, a: genai.Client, receiver: Receiver
) -> None:
    created = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"], name="mine")
    secret = created.new_signing_secret
    assert secret is not None and secret.startswith("whsec_")
    assert created.state == "enabled" and created.name == "mine" and created.uri == receiver.url
    assert created.id and created.create_time and created.update_time
    assert [s.truncated_secret for s in created.signing_secrets or []] == [f"whsec_...{secret[-4:]}"]

    got = a.webhooks.get(id=created.id)
    assert got.new_signing_secret is None
    assert got.model_dump(exclude={"new_signing_secret"}) == created.model_dump(exclude={"new_signing_secret"})
    assert [w.id for w in a.webhooks.list().webhooks or []] == [created.id]
    with raw(server, KEY_A) as http:  # the secret appears in no later answer
        for path in ("/v1beta/webhooks", f"/v1beta/webhooks/{created.id}", "/v1beta/webhookDeliveries"):
            assert secret[6:] not in http.get(path).text

    updated = a.webhooks.update(id=created.id, name="renamed", subscribed_events=["interaction.failed"])
    assert (updated.name, updated.subscribed_events, updated.uri) == ("renamed", ["interaction.failed"], receiver.url)
    masked = a.webhooks.update(id=created.id, update_mask="subscribed_events", name="ignored",
                               subscribed_events=ALL_EVENTS)  # fmt: skip
    assert (masked.name, masked.subscribed_events) == ("renamed", ALL_EVENTS)
    assert a.webhooks.update(id=created.id, state="disabled").state == "disabled"
    assert a.webhooks.update(id=created.id, state="enabled").state == "enabled"
    assert a.webhooks.get(id=created.id).new_signing_secret is None

    a.webhooks.delete(id=created.id)
    with pytest.raises(GenAiError) as error:
        a.webhooks.get(id=created.id)
    assert status_of(error) == 404
    assert a.webhooks.list().webhooks in (None, [])


def test_each_key_sees_and_receives_only_its_own_webhooks(
    server: LiveServer, a: genai.Client, b: genai.Client, receiver: Receiver
) -> None:
    theirs = Receiver().up()
    try:
        mine = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"])
        b.webhooks.create(uri=theirs.url, subscribed_events=["interaction.completed"])
        calls: list[Callable[[], Any]] = [
            lambda: b.webhooks.get(id=mine.id),
            lambda: b.webhooks.update(id=mine.id, name="taken"),
            lambda: b.webhooks.ping(id=mine.id),
            lambda: b.webhooks.rotate_signing_secret(id=mine.id),
            lambda: b.webhooks.delete(id=mine.id),
        ]
        for call in calls:
            with pytest.raises(GenAiError) as error:
                call()
            assert status_of(error) == 404
        assert mine.id not in [w.id for w in b.webhooks.list().webhooks or []]
        assert a.webhooks.get(id=mine.id).name is None  # untouched

        done = a.interactions.create(model=MODEL, input=script({"text": "hi"}))
        assert receiver.wait(1)[0].event()["data"]["id"] == done.id
        # B's webhook got no row for A's interaction, and B's delivery log shows none of A's
        assert deliveries(server, KEY_B, interaction_id=done.id) == []
        assert len(deliveries(server, KEY_A, interaction_id=done.id)) == 1
        assert theirs.events() == []
    finally:
        theirs.down()


# ---- events, signatures, payloads ---------------------------------------------------------------------------


def test_every_ending_sends_its_signed_event(server: LiveServer, a: genai.Client, receiver: Receiver) -> None:
    secret = a.webhooks.create(uri=receiver.url, subscribed_events=ALL_EVENTS).new_signing_secret
    assert secret is not None
    completed = a.interactions.create(model=MODEL, input=script({"text": "done"}))
    calling = a.interactions.create(model=MODEL, input=script({"call": {"name": "lookup", "arguments": {}}}),
                                    tools=[LOOKUP])  # fmt: skip
    failed = a.interactions.create(model=MODEL, input=script({"error": {"code": "unavailable", "message": "down"}}))
    running = a.interactions.create(model=MODEL, input=script({"text": "x"}, {"hang": True}), background=True)
    a.interactions.cancel(running.id)

    events = {d.event()["data"]["id"]: d for d in receiver.wait(4)}
    assert len({d.id for d in events.values()}) == 4  # one webhook-id per event
    for delivery in events.values():
        assert delivery.verify(secret) == delivery.event()
        assert delivery.headers["content-type"] == "application/json"
    expected = {
        completed.id: ("interaction.completed", "completed"),
        calling.id: ("interaction.requires_action", "requires_action"),
        failed.id: ("interaction.failed", "failed"),
        running.id: ("interaction.cancelled", "cancelled"),
    }
    assert {i: (d.event()["type"], d.event()["data"]["status"]) for i, d in events.items()} == expected
    assert events[failed.id].event()["data"]["error_code"] == "unavailable"
    assert events[failed.id].event()["data"]["error_message"] == "down"
    assert "user_metadata" not in events[completed.id].event()["data"]
    with pytest.raises(WebhookVerificationError):
        events[completed.id].verify("whsec_" + "A" * 32)


def test_webhook_config_uris_replace_the_registered_webhooks_and_carry_user_metadata(
    server: LiveServer, a: genai.Client, receiver: Receiver
) -> None:
    registered = Receiver().up()
    try:
        secret = a.webhooks.create(uri=registered.url, subscribed_events=["interaction.completed"]).new_signing_secret
        metadata = {"job": "j-1", "attempt": 3, "tags": ["x"]}
        config = {"uris": [receiver.url], "user_metadata": metadata}
        dynamic = a.interactions.create(model=MODEL, input=script({"text": "a"}), webhook_config=config)
        assert a.interactions.get(dynamic.id).webhook_config.user_metadata == metadata  # echoed, as Google does

        delivery = receiver.wait(1)[0]
        with raw(server, KEY_A) as http:
            owner_secret = http.get("/v1beta/webhookSigningSecret").json()["secret"]
        event = delivery.verify(owner_secret)
        assert event["data"] == {"id": dynamic.id, "status": "completed", "user_metadata": metadata}
        with pytest.raises(WebhookVerificationError):  # not the registered webhook's secret
            delivery.verify(secret or "")
        assert [d["uri"] for d in deliveries(server, KEY_A, interaction_id=dynamic.id)] == [receiver.url]

        # user_metadata alone goes to the registered webhooks
        static = a.interactions.create(
            model=MODEL, input=script({"text": "b"}), webhook_config={"user_metadata": metadata}
        )
        got = registered.wait(1)[0]
        assert got.verify(secret or "")["data"] == {"id": static.id, "status": "completed", "user_metadata": metadata}
        assert len(registered.events()) == 1  # the dynamic one never came here
    finally:
        registered.down()


def test_ping_and_rotation_with_a_grace_period_or_at_once(
    server: LiveServer, a: genai.Client, receiver: Receiver
) -> None:
    hook = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"])
    first = hook.new_signing_secret or ""
    a.webhooks.ping(id=hook.id)
    ping = receiver.wait(1, "webhook.ping")[0]
    assert ping.verify(first)["data"] == {"webhook_id": hook.id}

    second = a.webhooks.rotate_signing_secret(id=hook.id).secret or ""  # default: the old one signs for 24 h
    assert second.startswith("whsec_") and second != first
    shown = a.webhooks.get(id=hook.id).signing_secrets or []
    assert [s.truncated_secret[-4:] for s in shown] == [second[-4:], first[-4:]]
    assert shown[0].expire_time is None
    left = shown[1].expire_time.timestamp() - time.time()
    assert 24 * 3600 - 60 < left <= 24 * 3600
    a.webhooks.ping(id=hook.id)
    both = receiver.wait(2, "webhook.ping")[-1]
    assert len(both.headers["webhook-signature"].split(" ")) == 2
    assert both.verify(first) == both.verify(second)

    third = a.webhooks.rotate_signing_secret(id=hook.id, revocation_behavior="revoke_previous_secrets_immediately")
    assert len(a.webhooks.get(id=hook.id).signing_secrets or []) == 1
    a.webhooks.ping(id=hook.id)
    last = receiver.wait(3, "webhook.ping")[-1]
    assert last.verify(third.secret or "")["type"] == "webhook.ping"
    for old in (first, second):
        with pytest.raises(WebhookVerificationError):
            last.verify(old)


def test_the_owner_secret_of_webhook_config_rotates(server: LiveServer, b: genai.Client, receiver: Receiver) -> None:
    with raw(server, KEY_B) as http:
        old = http.get("/v1beta/webhookSigningSecret").json()["secret"]
        rotated = http.post("/v1beta/webhookSigningSecret:rotate",
                            json={"revocation_behavior": "revoke_previous_secrets_immediately"})  # fmt: skip
        new = rotated.json()["secret"]
        assert http.get("/v1beta/webhookSigningSecret").json()["secret"] == new
    b.interactions.create(model=MODEL, input=script({"text": "a"}), webhook_config={"uris": [receiver.url]})
    delivery = receiver.wait(1)[0]
    assert delivery.verify(new)["type"] == "interaction.completed"
    with pytest.raises(WebhookVerificationError):
        delivery.verify(old)


# ---- at least once -----------------------------------------------------------------------------------------


def test_a_receiver_down_for_a_while_gets_every_event_once_back(
    server: LiveServer, a: genai.Client, receiver: Receiver
) -> None:
    secret = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"]).new_signing_secret
    receiver.down()
    ids = {a.interactions.create(model=MODEL, input=script({"text": str(n)})).id for n in range(5)}

    def retried() -> bool:
        rows = [d for d in deliveries(server, KEY_A) if d.get("interaction_id") in ids]
        return len(rows) == 5 and all(d["attempts"] >= 2 and d["state"] == "pending" for d in rows)

    eventually(retried, what="two failed attempts of each event")
    rows = {d["interaction_id"]: d for d in deliveries(server, KEY_A) if d.get("interaction_id") in ids}
    assert all("ConnectError" in d["last_error"] and d["next_attempt_time"] for d in rows.values())

    receiver.up()
    got = receiver.wait(5)
    assert {d.verify(secret or "")["data"]["id"] for d in got} == ids
    assert {d.id for d in got} == {d["webhook_message_id"] for d in rows.values()}  # the ids of the first try
    eventually(
        lambda: all(d["state"] == "delivered" for d in deliveries(server, KEY_A) if d.get("interaction_id") in ids)
    )


def test_a_retried_event_keeps_its_webhook_id(server: LiveServer, a: genai.Client, receiver: Receiver) -> None:
    tries: dict[str, int] = {}

    def fail_twice(delivery: Delivery) -> int:
        tries[delivery.id] = tries.get(delivery.id, 0) + 1
        return 503 if tries[delivery.id] <= 2 else 204

    receiver.answer = fail_twice
    secret = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"]).new_signing_secret
    for n in range(3):
        a.interactions.create(model=MODEL, input=script({"text": str(n)}))
    eventually(lambda: len(receiver.events()) == 9, what="three tries of three events")
    by_id: dict[str, list[Delivery]] = {}
    for delivery in receiver.events():
        by_id.setdefault(delivery.id, []).append(delivery)
    assert len(by_id) == 3  # a receiver that drops repeated webhook-ids processes each event once
    for copies in by_id.values():
        assert len({c.body for c in copies}) == 1
        assert all(c.verify(secret or "") for c in copies)


def test_a_webhook_is_disabled_after_repeated_failures_and_resumes_when_enabled(
    tmp_path: Path, receiver: Receiver
) -> None:
    sections = {"webhooks": {**FAST, "disable_after_failures": 4, "disable_after_seconds": 0.1},
                f"models.{MODEL}": {"backend": "scripted", "inline": True}}  # fmt: skip
    server = LiveServer(tmp_path, sections).start()
    try:
        disabled_and_enabled_again(server, sdk(server, KEY_A), receiver)
    finally:
        server.stop()


def disabled_and_enabled_again(server: LiveServer, a: genai.Client, receiver: Receiver) -> None:
    receiver.answer = lambda delivery: 500
    hook = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"])
    first = a.interactions.create(model=MODEL, input=script({"text": "1"}))
    eventually(lambda: a.webhooks.get(id=hook.id).state == "disabled_due_to_failed_deliveries", what="disabling")
    [row] = deliveries(server, KEY_A, webhook_id=hook.id)
    assert (row["state"], row["attempts"], row["last_http_status"]) == ("pending", 4, 500)  # disable_after_failures

    a.interactions.create(model=MODEL, input=script({"text": "2"}))  # no event for a disabled webhook
    assert len(deliveries(server, KEY_A, webhook_id=hook.id)) == 1
    with pytest.raises(GenAiError) as error:
        a.webhooks.ping(id=hook.id)
    assert status_of(error) == 400

    receiver.answer = lambda delivery: 200
    assert a.webhooks.update(id=hook.id, state="enabled").state == "enabled"
    ok = [d for d in receiver.wait(1) if d.event()["data"]["id"] == first.id]
    assert ok
    eventually(lambda: deliveries(server, KEY_A, webhook_id=hook.id)[0]["state"] == "delivered")


def test_events_survive_kill_9_before_delivery_and_a_crash_mid_run(tmp_path: Path, receiver: Receiver) -> None:
    """The run's end and its outbox row commit together: a server killed after the run (receiver down, nothing
    delivered yet) delivers after its restart; a run cut by the crash continues after the restart, and its end
    is sent too."""
    server = LiveServer(tmp_path, {"webhooks": FAST, f"models.{MODEL}": {"backend": "scripted", "inline": True}})
    server.start()
    try:
        client = sdk(server, "any-key-123")
        secret = client.webhooks.create(uri=receiver.url, subscribed_events=ALL_EVENTS).new_signing_secret
        receiver.down()
        done = client.interactions.create(model=MODEL, input=script({"text": "finished"}))
        cut = script({"text": "x"}, {"sleep_ms": 3000}, {"text": "y"})  # mid-run when the server is killed
        hanging = client.interactions.create(model=MODEL, input=cut, background=True)
        eventually(lambda: [d for d in deliveries(server, "k") if d["attempts"] >= 1], what="a failed attempt")
        server.kill()
        receiver.up()
        server.start()
        got = {d.verify(secret or "")["data"]["id"]: d.event() for d in receiver.wait(2)}
    finally:
        server.stop()
    assert got[done.id]["type"] == "interaction.completed"
    assert got[hanging.id]["type"] == "interaction.completed"


def test_postgres_delivers_after_kill_9(tmp_path: Path, receiver: Receiver) -> None:
    with scratch_database() as database:
        sections = {"store": {"url": url(database)}, "webhooks": FAST,
                    f"models.{MODEL}": {"backend": "scripted", "inline": True}}  # fmt: skip
        server = LiveServer(tmp_path, sections).start()
        try:
            client = sdk(server, "any-key-123")
            secret = client.webhooks.create(uri=receiver.url, subscribed_events=ALL_EVENTS).new_signing_secret
            receiver.down()
            ids = {client.interactions.create(model=MODEL, input=script({"text": str(n)})).id for n in range(3)}
            eventually(lambda: len(deliveries(server, "k")) == 3, what="three rows")
            server.kill()
            receiver.up()
            server.start()
            got = receiver.wait(3)
        finally:
            server.stop()
    assert {d.verify(secret or "")["data"]["id"] for d in got} == ids


# ---- addresses and bad input -------------------------------------------------------------------------------


def test_private_addresses_are_refused_unless_allow_listed(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "egress.jsonl"
    sections = {"webhooks": {"allow_http": True, "retry_initial_seconds": 0.05, "retry_max_seconds": 0.1},
                f"models.{MODEL}": {"backend": "scripted", "inline": True}}  # fmt: skip
    server = LiveServer(tmp_path, sections, env=netguard.server_env(log)).start()
    try:
        with server.http() as http:
            for uri in (receiver.url, "http://10.1.2.3/h", "http://[::1]:9/h", "http://169.254.169.254/latest",
                        "http://[::ffff:192.168.0.1]/h", "http://100.100.100.200/"):  # fmt: skip
                answer = http.post("/v1beta/webhooks", json={"uri": uri, "subscribed_events": ALL_EVENTS})
                assert answer.status_code == 400, uri
                assert "webhooks.allow_networks" in answer.json()["error"]["message"]
                body = {"model": MODEL, "input": "hi", "webhook_config": {"uris": [uri]}}
                assert http.post("/v1beta/interactions", json=body).status_code == 400, uri
            # a name is judged where it resolves, at each delivery, by the egress point
            name = f"http://localhost:{receiver.port}/hook"
            assert http.post("/v1beta/webhooks", json={"uri": name, "subscribed_events": ALL_EVENTS}).status_code == 200
            http.post("/v1beta/interactions", json={"model": MODEL, "input": script({"text": "a"})})
            row = eventually(lambda: [d for d in deliveries(server, "k") if d["attempts"] >= 2], what="refusals")[0]
    finally:
        server.stop()
    assert "refused: 127.0.0.1 is a loopback address" in row["last_error"]
    assert receiver.events() == []
    tried = [t for t in netguard.attempts(log) if t["purpose"] == "webhooks"]
    assert tried and {t["outcome"] for t in tried} == {"refused"}


def test_uri_rules_by_default_and_with_the_settings() -> None:
    from openinteractions.config import WebhooksSettings
    from openinteractions.errors import ApiError
    from openinteractions.webhooks.wire import check_uri

    default, open_ = WebhooksSettings(), WebhooksSettings(allow_http=True, allow_networks=["10.0.0.0/8"])
    assert check_uri("https://example.com/h", default, "uri") == "https://example.com/h"
    for uri, settings, needle in [
        ("http://example.com/h", default, "webhooks.allow_http is off"),
        ("https://10.1.2.3/h", default, "private address"),
        ("https://[fe80::1%25eth0]/h", default, "link-local"),
        ("https://[::ffff:127.0.0.1]/h", open_, "loopback"),
        ("https://example.com:99999/", default, "not a URL"),
        ("https:///h", default, "no host"),
    ]:
        with pytest.raises(ApiError, match=re.escape(needle)):
            check_uri(uri, settings, "uri")
    assert check_uri("http://10.1.2.3/h", open_, "uri")


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1beta/webhooks", {"uri": "https://example.com/h", "subscribed_events": ["batch.succeeded"]}, "batch jobs"),
        ("/v1beta/webhooks", {"uri": "https://example.com/h", "subscribed_events": []}, "at least one event"),
        ("/v1beta/webhooks", {"subscribed_events": ["interaction.completed"]}, "'uri'"),
        ("/v1beta/webhooks", {"uri": "ftp://example.com/", "subscribed_events": ["interaction.completed"]}, "http"),
        ("/v1beta/webhooks", {"uri": "https://u:p@example.com/", "subscribed_events": ALL_EVENTS}, "credentials"),
        ("/v1beta/webhooks", {"uri": "https://example.com", "subscribed_events": ALL_EVENTS, "secret": "x"}, "secret"),
        ("/v1beta/webhooks", [], "JSON object"),
        ("/v1beta/interactions", {"model": MODEL, "input": "x", "webhook_config": {"uris": ["nope"]}}, "uris[0]"),
        ("/v1beta/interactions", {"model": MODEL, "input": "x", "webhook_config": {"uris": ["https://e.com/"] * 6}},
         "more than 5"),
        ("/v1beta/interactions", {"model": MODEL, "input": "x", "webhook_config": {"user_metadata": BIG_METADATA}},
         "max_user_metadata_bytes"),
        ("/v1beta/interactions", {"model": MODEL, "input": "x", "webhook_config": {"url": "https://e.com/"}}, "'url'"),
        ("/v1beta/webhookSigningSecret:rotate", {"revocation_behavior": "never"}, "revocation_behavior"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_400(server: LiveServer, path: str, body: Any, needle: str) -> None:
    with raw(server, KEY_A) as http:
        answer = http.post(path, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert needle in answer.json()["error"]["message"]


def test_bad_requests_on_a_webhook(server: LiveServer, a: genai.Client, receiver: Receiver) -> None:
    hook = a.webhooks.create(uri=receiver.url, subscribed_events=["interaction.completed"])
    with raw(server, KEY_A) as http:
        cases = [
            http.patch(f"/v1beta/webhooks/{hook.id}", json={"state": "disabled_due_to_failed_deliveries"}),
            http.patch(f"/v1beta/webhooks/{hook.id}?update_mask=secret", json={}),
            http.patch(f"/v1beta/webhooks/{hook.id}?update_mask=uri", json={}),
            http.get("/v1beta/webhooks?page_token=zzz"),
            http.get("/v1beta/webhooks?pageSize=2"),
            http.get("/v1beta/webhookDeliveries?page_size=x"),
        ]
        assert [c.status_code for c in cases] == [400] * len(cases), [c.text for c in cases]
        assert http.post(f"/v1beta/webhooks/{hook.id}:frobnicate", json={}).status_code == 404
        assert http.get(f"/v1beta/webhooks/{hook.id}:ping").status_code == 404
        assert http.get("/v1beta/webhooks", headers={"x-goog-api-key": "wrong-key-000"}).status_code == 403


def test_listing_pages(server: LiveServer, a: genai.Client, receiver: Receiver) -> None:
    made = [a.webhooks.create(uri=receiver.url, subscribed_events=ALL_EVENTS).id for _ in range(5)]
    first = a.webhooks.list(page_size=2)
    second = a.webhooks.list(page_size=2, page_token=first.next_page_token)
    third = a.webhooks.list(page_size=2, page_token=second.next_page_token)
    pages = [first, second, third]
    assert [w.id for page in pages for w in page.webhooks or []] == made
    assert third.next_page_token is None


# ---- the outbox's claims --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_concurrent_claims_never_take_the_same_row(tmp_path: Path, dialect: str) -> None:
    """Four claimers at once (several server processes on one database) each lease different rows: FOR UPDATE
    SKIP LOCKED on PostgreSQL, serialised writes on SQLite; together they take every row."""
    from openinteractions.webhooks import db

    with contextlib.ExitStack() as stack:
        if dialect == "sqlite":
            engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}", connect_args={"timeout": 30})
        else:
            engine = create_engine(url(stack.enter_context(scratch_database())))
        stack.callback(engine.dispose)
        now = time.time()
        rows = [(f"r{n}", f"msg_{n}", "o", "interaction.completed", f"v1_{n}", None, "https://e.com/", "{}", now, now)
                for n in range(300)]  # fmt: skip
        with engine.begin() as conn:
            db.create(conn)
            conn.exec_driver_sql(db.OUTBOX_INSERT.format(m="?" if dialect == "sqlite" else "%s"), rows)
        start = threading.Barrier(4)
        taken: dict[int, list[str]] = {n: [] for n in range(4)}

        def claimer(n: int) -> None:
            start.wait()
            for attempt in range(1000):
                with engine.begin() as conn:
                    got = db.claim(conn, time.time(), 7, time.time() + 60, f"w{n}:{attempt}")
                if not got and attempt > 0:
                    return
                taken[n].extend(row.id for row in got)

        threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = [row_id for ids in taken.values() for row_id in ids]
        assert sorted(everything) == sorted(row[0] for row in rows)  # each row exactly once
        if dialect != "sqlite":  # SQLite takes one writer at a time: on a loaded host one thread may take them all
            assert sum(1 for ids in taken.values() if ids) > 1  # they did claim side by side
        with engine.connect() as conn:
            leased = dict(conn.execute(select(db.outbox.c.id, db.outbox.c.leased_by)).all())
        assert all(leased[row_id].startswith(f"w{n}:") for n, ids in taken.items() for row_id in ids)
