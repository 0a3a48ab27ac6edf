"""Images are stored once, by content (store/media.py): the event log and the stored interaction hold a reference
in place of an image's base64 data, and every way of reading the interaction back (GET, a replay from any event,
a live reader that falls behind its run's end, the next turn's history) gets the bytes the live stream carried.
An image two interactions show is one row, kept until the last of them is deleted or expires.

The model pairs the scripted text model (the test double) with the ``openai`` image backend, which calls a small
images API here that draws noise seeded by the prompt: the same prompt, the same PNG."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import pg
from inprocess import until
from live import LiveServer, sse_events
from openinteractions.api.app import build_service
from openinteractions.api.body import parse_create
from openinteractions.config import Settings
from openinteractions.engine import replay
from openinteractions.engine.service import InteractionService
from openinteractions.events.log import DONE, split_frames
from openinteractions.store import media
from resuming import Follower, wait_for

Image = pytest.importorskip("PIL.Image")

PARTS = [{"text": "Here is the arena. "}, {"image": "the arena at noon"}, {"text": "It is bright at noon."}]
OTHER = [{"text": "At night: "}, {"image": "the arena at night"}]


class _Drawer(BaseHTTPRequestHandler):
    """``POST /v1/images/generations``: a PNG of noise, seeded by the prompt, ``side`` pixels square."""

    side = 96

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        side = type(self).side
        noise = random.Random(body["prompt"]).randbytes(side * side * 3)
        out = io.BytesIO()
        Image.frombytes("RGB", (side, side), noise).save(out, format="PNG")
        payload = json.dumps({"data": [{"b64_json": base64.b64encode(out.getvalue()).decode()}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def drawer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Drawer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with pg.scratch_database() as name:
        yield pg.url(name)


def _chunks(parts: list[dict[str, str]], size: int = 12) -> list[dict[str, str]]:
    answer = json.dumps({"parts": parts})
    return [{"text": answer[i : i + size]} for i in range(0, len(answer), size)]


def _writer(folder: Path) -> Path:
    """The text model: the parts, streamed; with "hang" in the input, it stops for good after the image."""
    answer = json.dumps({"parts": PARTS})
    cut = answer.index("It is bright")  # the image's part is whole, the next one started
    script = {
        "rules": [
            {"when": {"input_contains": "hang"}, "events": [{"text": answer[:cut]}, {"hang": True}]},
            {"when": {"input_contains": "night"}, "events": _chunks(OTHER)},
            {"when": {}, "events": _chunks(PARTS)},
        ]
    }
    path = folder / "writer.json"
    path.write_text(json.dumps(script))
    return path


def _settings(tmp_path: Path, drawer: str, store_url: str | None) -> Settings:
    return Settings(
        models={
            "writer": {"backend": "scripted", "script": _writer(tmp_path)},
            "illustrated": {"backend": "interleaved", "text": "writer", "images": "drawer"},
        },
        images={"drawer": {"backend": "openai", "base_url": drawer, "mime_type": "image/png"}},
        store={"data_dir": tmp_path, "url": store_url},
        signing_key="k" * 32,
    )


async def _create(service: InteractionService, input_text: str, **fields: Any) -> Any:
    body = {"model": "illustrated", "input": input_text, "response_format": [{"type": "text"}, {"type": "image"}]}
    return await service.create(parse_create(json.dumps({**body, **fields}).encode()), "o", "v1beta")


async def _drain(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def _streamed(service: InteractionService, input_text: str) -> tuple[str, bytes]:
    """A streaming create: its id and every byte its client got."""
    run = await _create(service, input_text, stream=True)
    body = await _drain(service.creation_stream(run))
    await until(lambda: run.id not in service.runs)
    return run.id, body


def _images(frames: list[bytes]) -> list[str]:
    """The base64 data of the image deltas, in order."""
    found = []
    for frame in frames:
        if b'"type":"image"' in frame:
            event = json.loads(frame.split(b"data: ", 1)[1])
            found.append(event["delta"]["data"])
    return found


def _image_blocks(steps: list[dict[str, Any]]) -> list[str]:
    return [c["data"] for s in steps if s["type"] == "model_output" for c in s["content"] if c["type"] == "image"]


def _rows(service: InteractionService, sql: str, **params: Any) -> list[Any]:
    with service.store.engine.connect() as conn:  # type: ignore[attr-defined]
        return list(conn.execute(text(sql), params).all())


def _stored(service: InteractionService, interaction_id: str) -> tuple[str, bytes, int]:
    steps, events, size = _rows(service, "SELECT steps, events, size FROM interactions WHERE id = :id",
                                id=interaction_id)[0]  # fmt: skip
    return steps, bytes(events), size


def _media_rows(service: InteractionService) -> tuple[int, int]:
    return _rows(service, "SELECT count(*) FROM media")[0][0], _rows(service, "SELECT count(*) FROM media_refs")[0][0]


@pytest.mark.parametrize("side", [96, 640], ids=["small image", "image over 1 MiB"])
def test_an_image_is_stored_once_and_read_back_as_it_was_streamed(
    tmp_path: Path, drawer: str, store_url: str | None, side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Drawer, "side", side)
    monkeypatch.setattr(replay, "PAGE_BYTES", 4096)  # replays read many pages, references cut between them

    async def main() -> None:
        service = build_service(_settings(tmp_path, drawer, store_url), tmp_path)
        await service.start()
        try:
            first, live = await _streamed(service, "Draw the arena")
            frames = split_frames(live.removesuffix(DONE))
            [image] = _images(frames)
            assert len(image) > side * side * 3 * 4 // 3  # noise does not compress
            png = base64.b64decode(image)
            assert png.startswith(b"\x89PNG")

            # Stored: a reference in the log and in the steps, the bytes once in media.
            steps, events, size = _stored(service, first)
            assert image not in steps and image[:100] not in steps
            assert image.encode()[:100] not in events
            assert len(events) < len(live) - len(image) + 200
            assert size >= len(live) - len(DONE)  # the owner's quota counts the image in full
            assert _rows(service, "SELECT digest, mime_type, size FROM media") == [
                (hashlib.sha256(png).hexdigest(), "image/png", len(png))
            ]
            assert bytes(_rows(service, "SELECT data FROM media")[0][0]) == png

            # Read back: the resource, the replay from every event, byte for byte what the live stream sent.
            resource = (await service.get(first, "o")).wire()
            assert _image_blocks(resource["steps"]) == [image]
            for after in range(len(frames) + 1):
                replayed = await _drain(await service.events(first, "o", str(after) if after else None))
                assert replayed == b"".join(frames[after:]) + DONE, after

            # The same picture in a second interaction (not streamed): one row, shown by both.
            second = await _create(service, "Draw the arena again")
            await until(lambda: second.id not in service.runs)
            assert _image_blocks(service.result(second).wire()["steps"]) == [image]
            assert _media_rows(service) == (1, 2)

            await service.delete(first, "o")
            assert _media_rows(service) == (1, 1)  # the second one still shows it
            resource = (await service.get(second.id, "o")).wire()
            assert _image_blocks(resource["steps"]) == [image]
            assert _images(split_frames(await _drain(await service.events(second.id, "o", None)))) == [image]

            await service.delete(second.id, "o")
            assert _media_rows(service) == (0, 0)
        finally:
            await service.stop()

    asyncio.run(main())


def test_images_go_when_the_interactions_that_show_them_expire(
    tmp_path: Path, drawer: str, store_url: str | None
) -> None:
    async def main() -> None:
        service = build_service(_settings(tmp_path, drawer, store_url), tmp_path)
        await service.start()
        try:
            shared_a, _ = await _streamed(service, "Draw the arena")
            shared_b, _ = await _streamed(service, "Draw the arena once more")
            night, _ = await _streamed(service, "Draw the arena at night")
            assert _media_rows(service) == (2, 3)
            with service.store.engine.begin() as conn:  # type: ignore[attr-defined]
                conn.execute(text("UPDATE interactions SET expires_at = 0 WHERE id IN (:a, :n)"),
                             {"a": shared_a, "n": night})  # fmt: skip
            assert await service.store.sweep(service.clock()) == 2
            assert _media_rows(service) == (1, 1)  # the night's image went; the noon one is still shown
            resource = (await service.get(shared_b, "o")).wire()
            assert len(_image_blocks(resource["steps"])) == 1
            assert await service.store.sweep(service.clock() + 10**9) == 1
            assert _media_rows(service) == (0, 0)
        finally:
            await service.stop()

    asyncio.run(main())


def test_a_running_interaction_logs_a_reference_and_a_reader_left_behind_gets_the_exact_rest(
    tmp_path: Path, drawer: str, store_url: str | None
) -> None:
    """The events table holds the image's event with a reference while the run goes on. A reader that took the
    image live and had not read on when the run's log was dropped goes on from the stored log, which is shorter
    than what it was sent: it gets the frames after the ones it has, exactly."""

    async def main() -> None:
        service = build_service(_settings(tmp_path, drawer, store_url), tmp_path)
        await service.start()
        try:
            run = await _create(service, "Draw the arena, then hang", background=True)
            reader = await service.events(run.id, "o", None)
            taken = b""
            while b'"type":"image"' not in taken:
                taken += await anext(reader)
            logged = [bytes(row[0]) for row in _rows(service, "SELECT frame FROM events WHERE interaction_id = :id "
                                                              "ORDER BY seq", id=run.id)]  # fmt: skip
            [image] = _images(split_frames(taken))
            assert len(logged) >= len(split_frames(taken))  # a reader sees only what is committed
            assert all(image[:100].encode() not in frame for frame in logged)
            assert sum(b"\x01sha256:" in frame for frame in logged) == 1
            running = (await service.get(run.id, "o")).wire()
            assert _image_blocks(running["steps"]) == [image]

            await service.cancel(run.id, "o")
            await until(lambda: not service.log.has(run.id))  # dropped: its readers go on from the store
            rest = await _drain(reader)
            whole = await _drain(await service.events(run.id, "o", None))
            assert taken + rest == whole
            last = split_frames(whole.removesuffix(DONE))[-1]
            assert json.loads(last.split(b"data: ", 1)[1])["interaction"]["status"] == "cancelled"
        finally:
            await service.stop()

    asyncio.run(main())


def test_the_next_turn_sees_the_stored_image_as_the_model_saw_it(tmp_path: Path, drawer: str) -> None:
    """A chain is loaded with its images' data back in place: the history's image block is the one streamed."""

    async def main() -> None:
        service = build_service(_settings(tmp_path, drawer, None), tmp_path)
        await service.start()
        try:
            first, live = await _streamed(service, "Draw the arena")
            [image] = _images(split_frames(live))
            chain = await service.store.chain(first, "o", service.clock(), 10)
            assert _image_blocks(json.loads(chain[0].steps)) == [image]
            follow = await _create(service, "Draw the arena again", previous_interaction_id=first)
            await until(lambda: follow.id not in service.runs)
            assert service.result(follow).status == "completed"
        finally:
            await service.stop()

    asyncio.run(main())


# ---- through the HTTP server: a replica that follows the run, a server killed while the run goes on ----------


def _sections(workdir: Path, drawer: str, store: dict[str, Any]) -> dict[str, dict[str, Any]]:
    workdir.mkdir(exist_ok=True)
    return {
        "models.writer": {"backend": "scripted", "script": _writer(workdir)},
        "models.illustrated": {"backend": "interleaved", "text": "writer", "images": "drawer"},
        "images.drawer": {"backend": "openai", "base_url": drawer, "mime_type": "image/png"},
        "store": store,
    }


def _start_hanging(server: LiveServer) -> str:
    body = {"model": "illustrated", "input": "Draw the arena, then hang", "background": True,
            "response_format": [{"type": "text"}, {"type": "image"}]}  # fmt: skip
    with server.http() as http:
        response = http.post("/v1beta/interactions", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _shown(server: LiveServer, interaction_id: str) -> list[str]:
    with server.http() as http:
        return _image_blocks(http.get(f"/v1beta/interactions/{interaction_id}").json()["steps"])


def _image_deltas(events: list[Any]) -> list[str]:
    return [e["delta"]["data"] for e in events if isinstance(e, dict) and e.get("delta", {}).get("type") == "image"]


def _replayed(server: LiveServer, interaction_id: str) -> str:
    with server.http() as http:
        response = http.get(f"/v1beta/interactions/{interaction_id}?stream=true")
    assert response.status_code == 200, response.text
    return response.text


def test_a_replica_follows_a_run_that_shows_an_image_and_streams_what_is_stored(tmp_path: Path, drawer: str) -> None:
    """B mirrors the run A executes from the events table (references expanded), and goes on from the stored log,
    shorter than what it sent, once the run ends: its client gets the stream A replays, event for event."""
    with pg.scratch_database() as database:
        store = {"url": pg.url(database), "replica_grace_seconds": 0.5}
        a = LiveServer(tmp_path / "a", _sections(tmp_path / "a", drawer, store))
        b = LiveServer(tmp_path / "b", _sections(tmp_path / "b", drawer, store))
        try:
            a.start()
            b.start()
            interaction_id = _start_hanging(a)
            on_b = Follower(b, interaction_id)
            wait_for(lambda: _image_deltas(on_b.events), seconds=30)
            with a.http() as http:
                assert http.post(f"/v1beta/interactions/{interaction_id}/cancel").status_code == 200
            on_b.join(15)
            replayed = [e for e in sse_events(_replayed(b, interaction_id)) if isinstance(e, dict)]
            shown_on_b = _shown(b, interaction_id)
        finally:
            a.stop()
            b.stop()
    assert on_b.done
    assert on_b.events == replayed
    assert replayed[-1]["interaction"]["status"] == "cancelled"
    assert _image_deltas(replayed) == shown_on_b
    assert len(shown_on_b) == 1 and base64.b64decode(shown_on_b[0]).startswith(b"\x89PNG")


def test_a_run_taken_over_after_a_crash_keeps_its_images_stored_once(tmp_path: Path, drawer: str) -> None:
    """Killed after the image, the server continues the run at its restart from the logged events (references
    expanded): the round starts again and draws the same picture, which is stored once; the result holds
    references, and reads give the bytes back."""
    server = LiveServer(tmp_path, _sections(tmp_path, drawer, {}))
    try:
        server.start()
        interaction_id = _start_hanging(server)
        wait_for(lambda: len(_shown(server, interaction_id)) == 1, seconds=30)
        server.kill()
        server.start()
        wait_for(lambda: len(_shown(server, interaction_id)) == 2, seconds=30)  # the round, played again
        with server.http() as http:
            assert http.post(f"/v1beta/interactions/{interaction_id}/cancel").status_code == 200
        shown = _shown(server, interaction_id)
        replayed = sse_events(_replayed(server, interaction_id))
    finally:
        server.stop()
    assert shown[0] == shown[1]
    streamed = [
        e["delta"]["data"] for e in replayed if isinstance(e, dict) and e.get("delta", {}).get("type") == "image"
    ]
    assert streamed == shown
    with sqlite3.connect(server.data_dir / "openinteractions.db") as db:
        steps, events = db.execute("SELECT steps, events FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
        assert db.execute("SELECT count(*) FROM media").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM media_refs").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
    assert shown[0][:100] not in steps and shown[0][:100].encode() not in events
    assert steps.count("\x01sha256:") == 2 and events.count(b"\x01sha256:") == 2


def test_only_canonical_image_data_becomes_a_reference_and_references_expand_to_the_same_bytes() -> None:
    encoded = base64.b64encode(random.Random(1).randbytes(2000))  # 2000 bytes: its last symbol has spare bits
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    loose = encoded[:-2] + bytes([alphabet[alphabet.index(encoded[-2]) ^ 1]]) + b"="  # the same bytes, not canonical
    assert base64.b64decode(loose) == base64.b64decode(encoded) and loose != encoded
    small = base64.b64encode(b"x" * 600)
    told = json.dumps({"type": "text", "text": '{"type":"image","data":"' + encoded.decode() + '"}'}).encode()
    frame = (
        b'event: step.delta\ndata: {"a":[{"type":"image","data":"' + encoded + b'","mime_type":"image/png"},'
        b'{"type":"image","data":"' + loose + b'"},{"type":"image","data":"' + small + b'"},'
        b'{"type":"image","data":"' + encoded + b'"},' + told + b"]}\n\n"
    )
    stored, shown = media.extract(frame)
    digest = hashlib.sha256(base64.b64decode(encoded)).hexdigest()
    assert [(item.digest, item.mime_type) for item in shown] == [
        (digest, "image/png"),
        (digest, "application/octet-stream"),
    ]
    assert stored.count(b"\x01sha256:" + digest.encode()) == 2
    assert loose in stored and small in stored and told in stored  # left as they were
    assert media.references(stored) == {digest}
    assert media.expand(stored, {digest: encoded}) == frame
    with pytest.raises(media.MissingMedia):
        media.expand(stored, {})
