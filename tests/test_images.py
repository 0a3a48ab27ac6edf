"""Interleaved text and images through the live server: the seed's image example, in Python and in JS, unchanged,
against a model that pairs a text model with a real diffusers pipeline (tiny, random weights, built by the test),
and once more with an OpenAI-compatible images API on loopback (a small server here that draws PNGs with Pillow).
The text side is the scripted backend, a test double for the model only: the search, the parsing of its parts,
the drawing and the stream are real. The image options the server cannot honour are 400s that name them."""

from __future__ import annotations

import base64
import io
import json
import os
import runpy
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")
from PIL import Image

from live import FIXTURES, LiveServer, sse_events
from protocol import check_stream
from test_images_pipeline import build_tiny_pipeline

SEEDS = Path(__file__).parent
SEED_INPUT = (
    "Search for the history of the Colosseum and write a short illustrated story about a gladiator named Marcus."
)
PARTS = [
    {"text": "# Marcus of the Flavian Amphitheatre\n\nThe Colosseum opened in 80 AD. "},
    {"image": "a gladiator named Marcus in the Colosseum's hypogeum, torchlight, oil painting"},
    {"text": "Marcus waited below the arena floor.\n\n"},
    {"image": "the crowd of the Colosseum cheering, sunlit, wide view"},
    {"text": "Then the gates opened."},
]
TEXT = "".join(part.get("text", "") for part in PARTS)


def chunked(text: str, size: int = 9) -> list[dict[str, str]]:
    return [{"text": text[i : i + size]} for i in range(0, len(text), size)]


def writer_script(folder: Path) -> Path:
    """The text model: a search first, then the answer as parts, streamed in small chunks."""
    answer = chunked(json.dumps({"parts": PARTS}))
    script = {
        "rules": [
            {
                "when": {"input_contains": "illustrated story", "round": 0},
                "events": [{"call": {"name": "google_search", "arguments": {"queries": ["history of the Colosseum"]}}}],
            },
            {"when": {}, "events": answer},
        ]
    }
    path = folder / "writer.json"
    path.write_text(json.dumps(script))
    return path


def image_server(workdir: Path, images: dict[str, Any]) -> LiveServer:
    sections = {
        "models.writer": {
            "backend": "scripted",
            "script": writer_script(workdir),
            "record": workdir / "requests.jsonl",
        },
        "images.drawer": images,
        "models.illustrated": {
            "backend": "interleaved",
            "text": "writer",
            "images": "drawer",
            "aliases": ["gemini-3.1-flash-image-preview"],
        },
    }
    live = LiveServer(workdir, sections)
    live.index(FIXTURES / "corpus")
    return live.start()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def diffusers_server(tmp_path_factory: pytest.TempPathFactory, pipeline: Path) -> Iterator[LiveServer]:
    live = image_server(
        tmp_path_factory.mktemp("diffusers-server"),
        {"backend": "diffusers", "path": pipeline, "steps": 2, "max_size": 256, "mime_type": "image/png"},
    )
    yield live
    live.stop()


def seed_env(server: LiveServer) -> dict[str, str]:
    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": "test-key"}
    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_API_VERSION"):
        env.pop(name, None)
    return env


def run_python_seed(server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    for name, value in seed_env(server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    runpy.run_path(str(SEEDS / "seed_py" / "image.py"), run_name="__main__")
    return capsys.readouterr().out


def check_seed_output(out: str) -> None:
    """Text, an image, text, an image, text: in the order the model placed them."""
    pieces = out.split("\n[Image chunk: ")
    assert len(pieces) == 3, out
    assert pieces[0] == TEXT.split("Marcus waited")[0]
    for piece, text in zip(
        pieces[1:], ["Marcus waited below the arena floor.\n\n", "Then the gates opened."], strict=True
    ):
        size, _, rest = piece.partition(" bytes]")
        assert int(size) > 100
        assert rest == text


def stream(server: LiveServer, **body: Any) -> list[dict[str, Any]]:
    request = {"model": "gemini-3.1-flash-image-preview", "input": "Draw the arena", "stream": True, **body}
    with server.http(timeout=120) as http:
        response = http.post("/v1beta/interactions", json=request)
    assert response.status_code == 200, response.text
    return [e for e in sse_events(response.text) if isinstance(e, dict)]


def images_in(events: list[dict[str, Any]]) -> list[tuple[str, Image.Image]]:
    out = []
    for event in events:
        delta = event.get("delta") or {}
        if event["event_type"] == "step.delta" and delta.get("type") == "image":
            image = Image.open(io.BytesIO(base64.b64decode(delta["data"])))
            image.load()
            out.append((delta["mime_type"], image))
    return out


def layout(events: list[dict[str, Any]]) -> list[str]:
    """The steps in order, each with the kinds of its deltas: ``model_output:text,image``."""
    steps: dict[int, list[str]] = {}
    for event in events:
        if event["event_type"] == "step.start":
            steps[event["index"]] = [event["step"]["type"]]
        elif event["event_type"] == "step.delta":
            kinds = steps[event["index"]]
            if event["delta"]["type"] not in kinds[1:]:
                kinds.append(event["delta"]["type"])
    return [f"{kinds[0]}:{','.join(kinds[1:])}" for _, kinds in sorted(steps.items())]


def test_the_python_seed_runs_unchanged_with_a_diffusers_pipeline(
    diffusers_server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_seed_output(run_python_seed(diffusers_server, monkeypatch, capsys))


def test_the_js_seed_runs_unchanged_with_a_diffusers_pipeline(diffusers_server: LiveServer) -> None:
    js = SEEDS / "js"
    if not (js / "node_modules" / "@google" / "genai").is_dir():
        pytest.fail("run `npm ci` in tests/js (scripts/test does it)")
    result = subprocess.run(["node", str(js / "seed" / "image.mjs")], capture_output=True, text=True,
                            env=seed_env(diffusers_server), timeout=120, cwd=js)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # console.log starts each image's line with a newline and ends it with one; the text goes on after it
    lines = [line for line in result.stdout.split("\n") if line.startswith("[Image chunk: ")]
    assert len(lines) == 2
    assert result.stdout.startswith(TEXT.split("Marcus waited")[0] + "\n[Image chunk: ")
    assert result.stdout.endswith(" bytes]\nThen the gates opened.")


def test_images_are_interleaved_as_the_seed_lays_them_out(diffusers_server: LiveServer) -> None:
    search = {"type": "google_search", "search_types": ["web_search", "image_search"]}
    events = stream(diffusers_server, input=SEED_INPUT, tools=[search], generation_config={"seed": 3},
                    response_format=[{"type": "text"}, {"type": "image"}])  # fmt: skip
    check_stream(events)
    assert layout(events) == [
        "google_search_call:google_search_call",
        "google_search_result:google_search_result",
        "model_output:text",
        "thought:thought_signature",
        "model_output:image,text",
        "thought:thought_signature",
        "model_output:image,text,text_annotation_delta",  # the search's sources, cited
    ]
    drawn = images_in(events)
    assert [(mime, image.format, image.size) for mime, image in drawn] == [("image/png", "PNG", (64, 64))] * 2
    assert drawn[0][1].tobytes() != drawn[1][1].tobytes()  # two prompts, two seeds
    usage = events[-1]["interaction"]["usage"]
    assert {"modality": "image", "tokens": 2 * 1120} in usage["output_tokens_by_modality"]
    assert usage["total_output_tokens"] == sum(m["tokens"] for m in usage["output_tokens_by_modality"])


def test_a_stored_interaction_returns_its_images_and_the_next_turn_sees_their_descriptions(
    diffusers_server: LiveServer,
) -> None:
    body = {
        "model": "gemini-3.1-flash-image-preview",
        "input": "Draw the Colosseum",
        "response_format": {"type": "image"},
    }
    with diffusers_server.http(timeout=120) as http:
        created = http.post("/v1beta/interactions", json=body).json()
        fetched = http.get(f"/v1beta/interactions/{created['id']}").json()
        follow = {"model": "gemini-3.1-flash-image-preview", "input": "What did you draw?",
                  "previous_interaction_id": created["id"]}  # fmt: skip
        assert http.post("/v1beta/interactions", json=follow).json()["status"] == "completed"
    assert fetched["status"] == "completed"
    assert fetched["steps"] == created["steps"]
    blocks = [block for step in fetched["steps"] if step["type"] == "model_output" for block in step["content"]]
    assert [b["type"] for b in blocks] == ["text", "image", "text", "image", "text"]
    assert base64.b64decode(blocks[1]["data"]).startswith(b"\x89PNG")
    seen = json.loads((diffusers_server.workdir / "requests.jsonl").read_text().splitlines()[-1])["history"]
    told = [block["text"] for step in seen if step["type"] == "model_output" for block in step["content"]]
    assert told[1] == f"[image: {PARTS[1]['image']}]\n\n"  # read back from the thought step's signature


@pytest.mark.parametrize(
    "body, named",
    [
        ({"generation_config": {"image_config": {"aspect_ratio": "7:3"}}}, "'generation_config.image_config.aspect"),
        ({"generation_config": {"image_config": {"image_size": "2K"}}}, "'generation_config.image_config.image_size'"),
        ({"generation_config": {"image_config": {"style": "noir"}}}, "'generation_config.image_config.style'"),
        ({"response_format": [{"type": "image", "mime_type": "image/gif"}]}, "'response_format.mime_type'"),
        ({"response_format": [{"type": "image", "delivery": "uri"}]}, "'response_format.delivery'"),
        ({"response_format": [{"type": "image", "aspect_ratio": "16:9"}],
          "generation_config": {"image_config": {"aspect_ratio": "1:1"}}}, "differ"),
        ({"response_format": [{"type": "image"}, {"type": "image"}]}, "more than one image format"),
        ({"response_format": [{"type": "text", "mime_type": "application/json"}, {"type": "image"}]}, "together with"),
    ],
)  # fmt: skip
def test_image_options_that_cannot_be_honoured_are_400s_that_name_them(
    diffusers_server: LiveServer, body: dict[str, Any], named: str
) -> None:
    request = {"model": "gemini-3.1-flash-image-preview", "input": "Draw", "response_format": [{"type": "image"}]}
    with diffusers_server.http() as http:
        response = http.post("/v1beta/interactions", json={**request, **body})
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


def test_image_config_without_image_output_and_images_from_a_text_model_are_400s(diffusers_server: LiveServer) -> None:
    with diffusers_server.http() as http:
        no_output = http.post("/v1beta/interactions", json={"model": "gemini-3.1-flash-image-preview", "input": "x",
                              "generation_config": {"image_config": {"aspect_ratio": "1:1"}}})  # fmt: skip
        text_only = http.post("/v1beta/interactions", json={"model": "writer", "input": "x",
                              "response_format": [{"type": "text"}, {"type": "image"}]})  # fmt: skip
    assert no_output.status_code == 400
    assert "'generation_config.image_config' needs image output" in no_output.json()["error"]["message"]
    assert text_only.status_code == 400
    message = text_only.json()["error"]["message"]
    assert "model 'writer' has none" in message and "[images.<name>]" in message


def test_aspect_ratio_and_size_are_honoured(diffusers_server: LiveServer) -> None:
    events = stream(
        diffusers_server, response_format=[{"type": "image", "aspect_ratio": "16:9", "mime_type": "image/jpeg"}]
    )
    assert [(mime, image.format, image.size) for mime, image in images_in(events)] == [
        ("image/jpeg", "JPEG", (88, 48))
    ] * 2


class _ImagesApi(BaseHTTPRequestHandler):
    """``POST /v1/images/generations``: a PNG of the size asked for, drawn with Pillow, as ``b64_json``."""

    requests: list[tuple[dict[str, Any], str | None]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append((body, self.headers.get("authorization")))
        if self.path != "/v1/images/generations":
            self.send_error(404)
            return
        width, height = (int(n) for n in body["size"].split("x"))
        out = io.BytesIO()
        Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="PNG")
        payload = json.dumps({"created": 0, "data": [{"b64_json": base64.b64encode(out.getvalue()).decode()}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def images_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImagesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_seed_runs_through_an_openai_compatible_images_api(
    tmp_path: Path, images_api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _ImagesApi.requests.clear()
    images = {"backend": "openai", "base_url": images_api, "model": "sd-turbo", "api_key": "upstream-key-1",
              "sizes": ["1024x1024", "1536x1024"], "mime_type": "image/jpeg"}  # fmt: skip
    live = image_server(tmp_path, images)
    try:
        check_seed_output(run_python_seed(live, monkeypatch, capsys))
        events = stream(live, response_format=[{"type": "image", "aspect_ratio": "3:2", "mime_type": "image/png"}])
        refused = stream_status(live, {"type": "image", "aspect_ratio": "9:16"})
    finally:
        live.stop()
    bodies = [body for body, _ in _ImagesApi.requests]
    assert bodies[0] == {"prompt": PARTS[1]["image"], "n": 1, "size": "1024x1024", "response_format": "b64_json",
                         "model": "sd-turbo"}  # fmt: skip
    assert {auth for _, auth in _ImagesApi.requests} == {"Bearer upstream-key-1"}
    assert [body["size"] for body in bodies[2:]] == ["1536x1024"] * 2
    # the upstream's PNG, re-encoded where the request asked for JPEG (the default here), as it is where PNG
    assert [(mime, image.format, image.size) for mime, image in images_in(events)] == [
        ("image/png", "PNG", (1536, 1024))
    ] * 2
    assert refused == (
        400,
        "'response_format.aspect_ratio': this model's image backend draws only 1024x1024, 1536x1024",
    )


def stream_status(server: LiveServer, image_format: dict[str, Any]) -> tuple[int, str]:
    body = {"model": "gemini-3.1-flash-image-preview", "input": "x", "response_format": [image_format]}
    with server.http() as http:
        response = http.post("/v1beta/interactions", json=body)
    return response.status_code, response.json()["error"]["message"].split(" (its sizes)")[0]


def test_the_embedded_llama_cpp_model_writes_the_parts_under_its_grammar(tmp_path: Path, pipeline: Path) -> None:
    """The real text side: SmolLM2 decodes the parts' JSON under the schema's grammar, seeded; its text streams and
    its image descriptions are drawn by the tiny pipeline."""
    sections = {
        "models.smollm2-135m-instruct": {"backend": "llamacpp", "parallel": 1, "context_size": 2048},
        "images.drawer": {"backend": "diffusers", "path": pipeline, "steps": 2},
        "models.illustrated": {"backend": "interleaved", "text": "smollm2-135m-instruct", "images": "drawer"},
    }
    live = LiveServer(tmp_path, sections).start()
    try:
        events = stream(live, model="illustrated", input="Write a very short illustrated story about a cat.",
                        response_format=[{"type": "text"}, {"type": "image"}],
                        generation_config={"seed": 1, "max_output_tokens": 300})  # fmt: skip
    finally:
        live.stop()
    check_stream(events)
    shown = layout(events)
    assert shown[0] == "model_output:text"
    assert "thought:thought_signature" in shown and "model_output:image,text" in shown
    drawn = images_in(events)
    assert drawn and all((mime, image.format, image.size) == ("image/jpeg", "JPEG", (64, 64)) for mime, image in drawn)
    text = "".join(e["delta"].get("text", "") for e in events if e["event_type"] == "step.delta")
    assert len(text.split()) > 10 and "{" not in text  # the parts' text, not their JSON
    usage = events[-1]["interaction"]["usage"]
    assert {"modality": "image", "tokens": 1120 * len(drawn)} in usage["output_tokens_by_modality"]


def test_response_modalities_image_asks_for_images_too(diffusers_server: LiveServer) -> None:
    events = stream(diffusers_server, response_modalities=["text", "image"])
    assert [(mime, image.size) for mime, image in images_in(events)] == [("image/png", (64, 64))] * 2
