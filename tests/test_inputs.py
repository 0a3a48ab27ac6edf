"""Image, audio, video and document inputs end to end: google-genai → the live server → what the model got.

The model is an ``openai`` backend whose upstream is the fake of ``fixtures/openai/fake_upstream.py``, which logs
every request body: a text-only model there must get a document's text and an audio part's transcript, a
model configured with more input modalities the parts themselves, inline. A small loopback server in this file
is the OpenAI-compatible transcription server (it records the bytes it got) and serves the files that parts
name by ``uri``. The PDF and WAV files are made here. Every part a configuration cannot take is a 400 that
names it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import struct
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai._interactions import BadRequestError

from live import LiveServer, free_port
from openinteractions.backends.base import Capabilities
from openinteractions.config import InputsSettings, UrlContextSettings
from openinteractions.engine.inputs import InputReader
from openinteractions.engine.transcribe import TranscriptionFailed
from openinteractions.engine.transcribe import _wav_pcm as wav_pcm
from openinteractions.errors import ApiError
from openinteractions.schema.steps import UserInputStep
from test_openai_backend import Process, fake, openai_model, url

ALL_MEDIA = ["text", "image", "audio", "video", "document"]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


# ---- files made by the test ----------------------------------------------------------------------------


def pdf(*pages: str) -> bytes:
    """A PDF with one line of text per page, written by hand (Helvetica, no compression)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for text in pages:
        stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
        content = len(objects) + 1
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        kids.append(len(objects) + 1)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            "/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
        )
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out = io.BytesIO(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A 440 Hz tone, 16-bit mono."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(frames)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the loopback helper: transcription server and file server ---------------------------------------------


class Helper(ThreadingHTTPServer):
    transcribed: list[bytes]
    files: dict[str, tuple[str, bytes]]


class HelperHandler(BaseHTTPRequestHandler):
    server: Helper

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path != "/v1/audio/transcriptions":
            self._send(404, "application/json", b"{}")
            return
        start = body.index(b"RIFF") if b"RIFF" in body else -1
        if start < 0 or b'name="model"' not in body:
            self._send(400, "application/json", json.dumps({"error": {"message": "no WAV file"}}).encode())
            return
        size = struct.unpack("<I", body[start + 4 : start + 8])[0] + 8
        self.server.transcribed.append(body[start : start + size])
        text = f"the recording said hello ({size} bytes)"
        self._send(200, "application/json", json.dumps({"text": text}).encode())

    def do_GET(self) -> None:
        kind, data = self.server.files.get(self.path, ("text/plain", b""))
        self._send(200 if data else 404, kind, data)

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def helper() -> Iterator[Helper]:
    server = Helper(("127.0.0.1", 0), HelperHandler)
    server.transcribed, server.files = [], {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def helper_url(helper: Helper, path: str = "") -> str:
    return f"http://127.0.0.1:{helper.server_address[1]}{path}"


# ---- the server under test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake") / "requests.jsonl"


@pytest.fixture(scope="module")
def upstream(fake_log: Path) -> Iterator[Process]:
    process = fake(free_port(), fake_log)
    yield process
    process.kill()


def upstream_url(upstream: Process) -> str:
    return url(int(upstream.args[2]))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Process, helper: Helper) -> Iterator[LiveServer]:
    main = [upstream_url(upstream)]
    sections = {
        "models.reader": openai_model(main, model="text", health_check_interval=0),
        "models.seer": openai_model(main, model="text", health_check_interval=0, input_modalities=ALL_MEDIA),
        "models.viewer": openai_model(main, model="text", health_check_interval=0, input_modalities=["text", "image"]),
        "tools.url_context": {"allow_networks": ["127.0.0.1/32"]},
        "store": {"sqlite_exclusive": False},  # db_rows reads the database while the server runs
        "inputs": {"max_part_bytes": 200_000, "max_pdf_pages": 2},
        "inputs.transcription": {"backend": "openai", "base_url": helper_url(helper, "/v1"), "model": "whisper-x"},
    }
    live = LiveServer(tmp_path_factory.mktemp("inputs"), sections).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def ask(client: genai.Client, model: str, marker: str, *parts: dict[str, Any]) -> dict[str, Any]:
    """Create with a text marker and ``parts``; the chat-completion request the upstream got for it."""
    interaction = client.interactions.create(model=model, input=[{"type": "text", "text": marker}, *parts])
    assert interaction.status == "completed"
    return sent(marker)


LOG: list[Path] = []


@pytest.fixture(autouse=True)
def _log(fake_log: Path) -> None:
    LOG[:] = [fake_log]


def sent(marker: str) -> dict[str, Any]:
    """The last request body whose last user message carries ``marker``."""
    bodies = [json.loads(line)["body"] for line in LOG[0].read_text().splitlines()]
    found = [b for b in bodies if marker in json.dumps(b["messages"][-1])]
    assert found, f"no request carried {marker!r}"
    return found[-1]


def user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def refused(client: genai.Client, model: str, *parts: dict[str, Any]) -> str:
    with pytest.raises(BadRequestError) as caught:
        client.interactions.create(model=model, input=[{"type": "text", "text": "look"}, *parts])
    assert caught.value.status_code == 400
    return str(caught.value)


# ---- documents become text for a model that reads text only -----------------------------------------------


def test_a_pdfs_text_reaches_a_text_only_model(client: genai.Client) -> None:
    body = ask(client, "reader", "m-pdf", {"type": "document", "data": b64(pdf("Quarterly revenue rose 12 percent")),
                                           "mime_type": "application/pdf"})  # fmt: skip
    text = user_text(body)
    assert "m-pdf" in text
    assert "Quarterly revenue rose 12 percent" in text
    assert "[Document (application/pdf, 1 page read)]" in text
    assert isinstance(body["messages"][-1]["content"], str)  # plain text: nothing but text reached the model


def test_a_pdf_is_read_up_to_the_page_limit_and_says_so(client: genai.Client) -> None:
    document = pdf("First page words", "Second page words", "Third page words")
    text = user_text(ask(client, "reader", "m-pages", {"type": "document", "data": b64(document),
                                                       "mime_type": "application/pdf"}))  # fmt: skip
    assert "First page words" in text and "Second page words" in text
    assert "Third page words" not in text
    assert "2 pages read" in text and "max_pdf_pages=2" in text


@pytest.mark.parametrize(
    ("mime_type", "data", "expected"),
    [
        (
            "text/html",
            b"<html><head><title>T</title></head><body><nav>menu</nav><article><p>"
            b"The river Thames flows through London and was once frozen solid in winter.</p></article>"
            b"</body></html>",
            "The river Thames flows through London",
        ),
        ("text/csv", b"city,population\nOslo,709000\nBergen,291000\n", "Bergen,291000"),
        ("text/plain", "Plain words with an \u00e9.".encode(), "Plain words with an \u00e9."),
        ("text/markdown", b"# Title\n\n- item one\n- item two\n", "- item two"),
    ],
)
def test_html_csv_text_and_markdown_documents_become_text(
    client: genai.Client, mime_type: str, data: bytes, expected: str
) -> None:
    marker = f"m-doc-{mime_type}"
    text = user_text(ask(client, "reader", marker, {"type": "document", "data": b64(data), "mime_type": mime_type}))
    assert expected in text
    assert f"[Document ({mime_type})]" in text


def test_a_document_given_by_uri_is_fetched_and_read(client: genai.Client, helper: Helper) -> None:
    helper.files["/report.pdf"] = ("application/pdf", pdf("Fetched by the server"))
    text = user_text(ask(client, "reader", "m-uri", {"type": "document", "uri": helper_url(helper, "/report.pdf")}))
    assert "Fetched by the server" in text


# ---- audio becomes a transcript ----------------------------------------------------------------------------


def test_a_wav_is_transcribed_and_its_transcript_reaches_the_model(client: genai.Client, helper: Helper) -> None:
    recording = wav(0.25)
    before = len(helper.transcribed)
    text = user_text(
        ask(client, "reader", "m-wav", {"type": "audio", "data": b64(recording), "mime_type": "audio/wav"})
    )
    assert helper.transcribed[before:] == [recording]  # the whole file, as sent
    assert f"[Transcript of the audio]\nthe recording said hello ({len(recording)} bytes)" in text


def test_a_chain_does_not_transcribe_its_earlier_audio_again(client: genai.Client, helper: Helper) -> None:
    recording = wav(0.3)
    part = {"type": "audio", "data": b64(recording), "mime_type": "audio/wav"}
    first = client.interactions.create(model="reader", input=[{"type": "text", "text": "m-chain-1"}, part])
    count = len(helper.transcribed)
    second = client.interactions.create(model="reader", input="m-chain-2", previous_interaction_id=first.id)
    assert second.status == "completed"
    assert len(helper.transcribed) == count
    history = json.dumps(sent("m-chain-2")["messages"])
    assert f"the recording said hello ({len(recording)} bytes)" in history


# ---- parts a model takes natively go to it inline ----------------------------------------------------------


def test_images_audio_video_and_documents_go_natively_to_a_model_that_takes_them(
    client: genai.Client, helper: Helper
) -> None:
    helper.files["/pixel.png"] = ("image/png", PNG)
    recording, document = wav(0.1), pdf("native")
    body = ask(
        client, "seer", "m-native",
        {"type": "image", "data": b64(PNG), "mime_type": "image/png", "resolution": "low"},
        {"type": "image", "uri": helper_url(helper, "/pixel.png")},
        {"type": "audio", "data": b64(recording), "mime_type": "audio/wav"},
        {"type": "video", "data": b64(b"\x00\x00\x00\x18ftypmp42"), "mime_type": "video/mp4"},
        {"type": "document", "data": b64(document), "mime_type": "application/pdf"},
    )  # fmt: skip
    parts = body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "m-native"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}", "detail": "low"}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}}  # fetched
    assert parts[3] == {"type": "input_audio", "input_audio": {"data": b64(recording), "format": "wav"}}
    assert parts[4]["video_url"]["url"].startswith("data:video/mp4;base64,")
    file = {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{b64(document)}"}
    assert parts[5] == {"type": "file", "file": file}


def test_a_model_with_images_still_gets_documents_as_text(client: genai.Client) -> None:
    body = ask(client, "viewer", "m-mixed", {"type": "image", "data": b64(PNG), "mime_type": "image/png"},
               {"type": "document", "data": b64(b"a,b\n1,2\n"), "mime_type": "text/csv"})  # fmt: skip
    parts = body["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert "a,b\n1,2" in parts[2]["text"]


# ---- what a configuration cannot take is a 400 that names the part --------------------------------------------


def test_an_image_for_a_text_only_model_is_a_400_naming_the_part(client: genai.Client) -> None:
    message = refused(client, "reader", {"type": "image", "data": b64(PNG), "mime_type": "image/png"})
    assert "image input (input step 0, content 1)" in message
    assert "'reader'" in message and "it takes text" in message


def test_a_video_for_a_model_without_video_is_a_400_naming_the_part(client: genai.Client) -> None:
    message = refused(client, "viewer", {"type": "video", "data": b64(b"xx"), "mime_type": "video/mp4"})
    assert "video input (input step 0, content 1)" in message


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"type": "document", "data": b64(b"PK\x03\x04"), "mime_type": "application/zip"},
            "documents of type 'application/zip' cannot be read as text",
        ),
        ({"type": "document", "data": b64(b"%PDF-1.4 garbage"), "mime_type": "application/pdf"}, "the PDF"),
        ({"type": "document", "data": "not base64!", "mime_type": "text/plain"}, "'data' is not valid base64"),
        (
            {"type": "document", "data": b64(b"x" * 300_000), "mime_type": "text/plain"},
            "larger than 200000 bytes (inputs.max_part_bytes)",
        ),
        ({"type": "document", "data": b64(b"hello")}, "needs 'mime_type' with inline 'data'"),
        ({"type": "document", "uri": "gs://bucket/report.pdf"}, "reads only http(s) URIs"),
        ({"type": "document", "uri": "files/abc123"}, "serves no Files API"),
        ({"type": "audio", "data": b64(b"junk"), "mime_type": "audio/wav"}, "HTTP 400"),
    ],
)
def test_a_part_the_server_cannot_read_is_a_400_that_says_why(
    client: genai.Client, part: dict[str, Any], expected: str
) -> None:
    message = refused(client, "reader", part)
    assert f"the {part['type']} part (input step 0, content 1)" in message
    assert expected in message


def test_a_uri_outside_the_address_policy_is_a_400(client: genai.Client, helper: Helper) -> None:
    port = helper.server_address[1]
    message = refused(client, "reader", {"type": "document", "uri": f"http://127.0.0.2:{port}/x.txt"})
    assert "the document part (input step 0, content 1): its uri may not be fetched" in message
    assert "loopback" in message


def test_a_uri_that_answers_404_is_a_400(client: genai.Client, helper: Helper) -> None:
    message = refused(client, "reader", {"type": "document", "uri": helper_url(helper, "/missing.pdf")})
    assert "HTTP 404" in message


def test_a_refused_request_leaves_nothing_behind(server: LiveServer, client: genai.Client) -> None:
    rows = server.db_rows()
    refused(client, "reader", {"type": "image", "data": b64(PNG), "mime_type": "image/png"})
    assert server.db_rows() == rows


# ---- the offline default: PocketSphinx, and no transcription at all -------------------------------------------


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, upstream: Process) -> Iterator[genai.Client]:
    sections = {"models.reader": openai_model([upstream_url(upstream)], model="text", health_check_interval=0)}
    live = LiveServer(tmp_path_factory.mktemp("offline"), sections).start()
    yield genai.Client(api_key="k", http_options={"base_url": live.url})
    live.stop()


def test_by_default_a_wav_is_transcribed_offline(offline: genai.Client) -> None:
    text = user_text(ask(offline, "reader", "m-sphinx", {"type": "audio", "data": b64(wav(0.5)),
                                                         "mime_type": "audio/wav"}))  # fmt: skip
    assert "[Transcript of the audio]" in text


def test_the_offline_transcriber_refuses_what_it_cannot_read(offline: genai.Client) -> None:
    message = refused(offline, "reader", {"type": "audio", "data": b64(b"ID3junk"), "mime_type": "audio/mp3"})
    assert "the audio part (input step 0, content 1): the built-in transcriber (PocketSphinx) reads WAV only" in message


# ---- units: no server --------------------------------------------------------------------------------------


def reader(**transcription: Any) -> InputReader:
    settings = InputsSettings(max_pdf_pages=1, max_text_chars=100, transcription=transcription or {"backend": "none"})
    return InputReader(settings, UrlContextSettings())


def user(*blocks: dict[str, Any]) -> UserInputStep:
    return UserInputStep.model_validate({"content": [{"type": "text", "text": "t"}, *blocks]})


TEXT_ONLY = Capabilities()


def test_audio_without_a_transcription_backend_is_a_400_that_says_what_to_configure() -> None:
    part = {"type": "audio", "data": b64(wav(0.1)), "mime_type": "audio/wav"}
    with pytest.raises(ApiError) as caught:
        asyncio.run(reader().given([user(part)], TEXT_ONLY, "m", 0))
    assert caught.value.http_status == 400
    assert "the audio part (input step 0, content 1): model 'm' takes no audio input" in caught.value.message
    assert "[inputs.transcription]" in caught.value.message


def test_a_part_of_an_earlier_interaction_is_named_as_such() -> None:
    steps = [user({"type": "video", "data": "AAAA", "mime_type": "video/mp4"}), user()]
    with pytest.raises(ApiError, match=r"the video part \(step 0 of the previous interactions, content 1\)"):
        asyncio.run(reader().given(steps, TEXT_ONLY, "m", 1))


def test_only_the_parts_change_and_text_steps_are_kept_as_they_are() -> None:
    steps: list[Any] = [user(), user({"type": "document", "data": b64(b"x" * 500), "mime_type": "text/plain"})]
    given = asyncio.run(reader().given(steps, TEXT_ONLY, "m", 0))
    assert given[0] is steps[0]
    text = given[1].content[1].text
    assert text.startswith("[Document (text/plain, cut at inputs.max_pdf_pages=1 / max_text_chars=100)]\n")
    assert ("x" * 100 + "\n[End of document]") in text and "x" * 101 not in text
    assert steps[1].content[1].type == "document"  # the request's own steps are not changed


@pytest.mark.parametrize(("width", "channels", "rate"), [(1, 1, 8000), (2, 2, 44100), (2, 1, 16000)])
def test_wav_of_any_common_shape_becomes_16khz_mono_pcm(width: int, channels: int, rate: int) -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(width)
        file.setframerate(rate)
        file.writeframes(b"\x80" * width * channels * rate)  # one second
    pcm = wav_pcm(out.getvalue())
    assert len(pcm) == 2 * 16000


def test_a_file_that_is_not_wav_is_the_callers_fault() -> None:
    with pytest.raises(TranscriptionFailed) as caught:
        wav_pcm(b"ID3\x03 not a wav")
    assert caught.value.client_fault


def test_a_transcription_server_that_is_down_is_a_503_naming_the_part() -> None:
    down = reader(backend="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    part = {"type": "audio", "data": b64(wav(0.1)), "mime_type": "audio/wav"}
    with pytest.raises(ApiError) as caught:
        asyncio.run(down.given([user(part)], TEXT_ONLY, "m", 0))
    assert caught.value.http_status == 503
    assert caught.value.message.startswith("the audio part (input step 0, content 1) could not be transcribed: ")
