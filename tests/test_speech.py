"""Audio output through google-genai against the real server: the text a model writes is spoken by a speech
backend and streamed as ``audio`` deltas. Piper with its packaged voice (the default install), espeak-ng, and an
OpenAI-compatible ``/v1/audio/speech`` upstream faked on loopback (it answers real WAV bytes); the 400s for what a
configuration cannot do. The text side is the embedded model or the scripted backend (a test double for the
model only); the synthesis is real."""

from __future__ import annotations

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

from live import LiveServer
from protocol import check_stream as check_grammar
from resuming import dump

ANSWER = "The sun is a star. It gives us light and warmth every day. Plants need it to grow."
WORDS = len(ANSWER.split())
SCRIPTED = {"backend": "scripted", "inline": True}


def scripted_text(*pieces: str | int) -> str:
    """An inline script: text pieces, and pauses (ms) between them, then the end."""
    events = [{"sleep_ms": p} if isinstance(p, int) else {"text": p} for p in pieces]
    return json.dumps({"script": [*events, {"usage": {"input_tokens": 5, "output_tokens": 20}}, {"finish": "stop"}]})


def serve(
    tmp_path: Path, speech: dict[str, Any] | None, models: bool = True, voices: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    sections: dict[str, dict[str, Any]] = {"models.m": SCRIPTED} if models else {}
    if speech is not None:
        sections["speech"] = speech
    if voices is not None:
        sections["speech.voices"] = voices
    live = LiveServer(tmp_path, sections).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def piper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(tmp_path_factory.mktemp("piper"), None)  # no [speech]: auto finds Piper and its voice


@pytest.fixture(scope="module")
def espeak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(tmp_path_factory.mktemp("espeak"), {"backend": "espeak-ng"}, voices={"kore": "en-us+f3"})


def client_for(server: LiveServer) -> genai.Client:
    return genai.Client(api_key="k", http_options={"base_url": server.url})


def stream(server: LiveServer, text: str, **fields: Any) -> list[dict[str, Any]]:
    client = client_for(server)  # held while the stream is read: a client collected meanwhile closes it
    return [dump(e) for e in client.interactions.create(model="m", input=text, stream=True, **fields)]


def check_stream(events: list[dict[str, Any]], status: str = "completed") -> list[dict[str, Any]]:
    for delta in deltas(events, "audio"):
        assert set(delta) == {"type", "data", "mime_type", "sample_rate", "channels"}
    folded = check_grammar(events)
    assert folded["status"] == status
    return folded["steps"]  # type: ignore[no-any-return]


def deltas(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["delta"] for e in events if e["event_type"] == "step.delta" and e["delta"]["type"] == kind]


def pcm_seconds(delta: dict[str, Any]) -> float:
    """An ``audio/l16`` delta as Gemini's clients read it: raw 16-bit samples, put in a WAV file by ``wave``."""
    assert delta["mime_type"] == "audio/l16" and delta["channels"] == 1
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(delta["sample_rate"])
        wav.writeframes(base64.b64decode(delta["data"]))
    return wav_seconds(out.getvalue(), delta["sample_rate"])


def wav_seconds(data: bytes, rate: int) -> float:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (rate, 1, 2)
        frames = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    assert max(map(abs, samples)) > 1000  # speech, not silence
    return len(samples) / rate


def assert_plausible(seconds: float, words: int) -> None:
    assert 0.2 * words <= seconds <= 1.5 * words, (seconds, words)


# ---- Piper, the default ----------------------------------------------------------------------------------


def test_audio_only_is_spoken_sentence_by_sentence_in_pcm_as_gemini_sends_it(piper: LiveServer) -> None:
    events = stream(piper, scripted_text(ANSWER), response_modalities=["audio"])
    steps = check_stream(events)
    assert [s["type"] for s in steps] == ["model_output"]
    assert deltas(events, "text") == []  # audio only, as Gemini's speech models answer
    audio = deltas(events, "audio")
    assert len(audio) == 3  # one per sentence
    assert {a["sample_rate"] for a in audio} == {24_000}
    assert_plausible(sum(map(pcm_seconds, audio)), WORDS)
    usage = events[-1]["interaction"]["usage"]
    by_modality = {m["modality"]: m["tokens"] for m in usage["output_tokens_by_modality"]}
    assert by_modality["text"] == 20 and 32 * 0.2 * WORDS <= by_modality["audio"] <= 32 * 1.5 * WORDS
    assert usage["total_output_tokens"] == by_modality["text"] + by_modality["audio"]


def test_the_first_sentence_is_heard_while_the_model_still_writes(piper: LiveServer) -> None:
    """The model hangs after its first sentence: its audio comes all the same, after its text (shown too when
    "text" is asked for besides "audio"), in the same open step."""
    first = "Hello there, this is the first sentence. "
    script = json.dumps({"script": [{"text": first}, {"text": "And then"}, {"hang": True}]})
    client = client_for(piper)
    events: list[dict[str, Any]] = []
    for event in client.interactions.create(
        model="m", input=script, stream=True, response_modalities=["text", "audio"]
    ):
        events.append(dump(event))
        if event.event_type == "step.delta" and event.delta.type == "audio":
            break
    client.interactions.cancel(events[0]["interaction"]["id"])
    assert [e["event_type"] for e in events if e["event_type"].startswith("step.")].count("step.stop") == 0
    assert "".join(d["text"] for d in deltas(events, "text")) == first + "And then"
    assert_plausible(pcm_seconds(deltas(events, "audio")[0]), len(first.split()))


def test_non_stream_wav_output_at_the_asked_rate_is_in_the_steps_and_output_audio(piper: LiveServer) -> None:
    client = client_for(piper)
    interaction = client.interactions.create(
        model="m", input=scripted_text(ANSWER),
        response_format={"type": "audio", "mime_type": "audio/wav", "sample_rate": 16_000},
        generation_config={"speech_config": {"voice": "en_US-joe-medium", "language": "en-US"}},
    )  # fmt: skip
    assert interaction.status == "completed"
    blocks = interaction.steps[-1].content
    assert [b.type for b in blocks] == ["audio"] * 3
    assert all(b.mime_type == "audio/wav" and b.sample_rate == 16_000 for b in blocks)
    total = sum(wav_seconds(base64.b64decode(b.data), 16_000) for b in blocks)
    assert_plausible(total, WORDS)
    assert interaction.output_audio is not None and interaction.output_audio.data == blocks[-1].data
    stored = client.interactions.get(interaction.id)
    assert [b.data for b in stored.steps[-1].content] == [b.data for b in blocks]


def test_the_embedded_model_answer_is_spoken_on_the_default_install(tmp_path: Path) -> None:
    """No [models], no [speech]: the packaged SmolLM2 writes, the packaged Piper voice speaks."""
    server = next(serve(tmp_path, None, models=False))
    try:
        client = client_for(server)
        events = [dump(e) for e in client.interactions.create(
            model="gemini-3-flash-preview", input="Say something about the sea.", stream=True,
            response_modalities=["text", "audio"], generation_config={"max_output_tokens": 24, "seed": 1},
        )]  # fmt: skip
    finally:
        server.stop()
    check_stream(events, "incomplete")  # at max_output_tokens
    text = "".join(d["text"] for d in deltas(events, "text"))
    audio = deltas(events, "audio")
    assert audio, text
    assert_plausible(sum(map(pcm_seconds, audio)), len(text.split()))


# ---- espeak-ng -----------------------------------------------------------------------------------------


def test_espeak_ng_speaks_in_the_language_or_voice_asked(espeak: LiveServer) -> None:
    english = stream(espeak, scripted_text(ANSWER), response_modalities=["audio"],
                     generation_config={"speech_config": [{"voice": "kore"}]})  # fmt: skip
    assert_plausible(sum(map(pcm_seconds, deltas(english, "audio"))), WORDS)
    german_text = "Die Sonne ist ein Stern. Sie gibt uns Licht."
    german = stream(espeak, scripted_text(german_text), response_modalities=["audio"],
                    generation_config={"speech_config": {"speakers": [{"language": "de"}]}})  # fmt: skip
    assert_plausible(sum(map(pcm_seconds, deltas(german, "audio"))), len(german_text.split()))


def test_espeak_ng_refuses_a_voice_or_language_it_does_not_have(espeak: LiveServer) -> None:
    for config, field in (({"voice": "puck"}, "voice"), ({"language": "xx-yy"}, "language")):
        with pytest.raises(BadRequestError, match=rf"speech_config\.{field}"):
            stream(espeak, "hi", response_modalities=["audio"], generation_config={"speech_config": config})


# ---- an OpenAI-compatible upstream ------------------------------------------------------------------------


class FakeSpeech(BaseHTTPRequestHandler):
    """``POST /v1/audio/speech``: a real WAV (a tone of 0.4 s per word) for each request, which it keeps."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        FakeSpeech.requests.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        rate, seconds = 16_000, 0.4 * len(body["input"].split())
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(int(rate * seconds)))
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(frames)
        self.send_response(200)
        self.send_header("content-type", "audio/wav")
        self.send_header("content-length", str(len(out.getvalue())))
        self.end_headers()
        self.wfile.write(out.getvalue())

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeSpeech)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    speech = {"backend": "openai", "base_url": f"http://127.0.0.1:{fake.server_port}/v1", "model": "kokoro",
              "voice": "af_bella", "api_key": "secret-key"}  # fmt: skip
    yield from serve(tmp_path_factory.mktemp("openai"), speech)
    fake.shutdown()


def test_an_openai_compatible_upstream_speaks_each_sentence(upstream: LiveServer) -> None:
    FakeSpeech.requests.clear()
    events = stream(upstream, scripted_text(ANSWER), response_modalities=["audio"],
                    generation_config={"speech_config": {"voice": "am_adam"}})  # fmt: skip
    audio = deltas(events, "audio")
    assert len(audio) == 3
    assert sum(map(pcm_seconds, audio)) == pytest.approx(0.4 * WORDS, abs=0.01)  # resampled 16 kHz -> 24 kHz
    assert [r["input"] for r in FakeSpeech.requests] == [
        "The sun is a star.", "It gives us light and warmth every day.", "Plants need it to grow."
    ]  # fmt: skip
    assert {(r["path"], r["model"], r["voice"], r["response_format"], r["auth"]) for r in FakeSpeech.requests} == {
        ("/v1/audio/speech", "kokoro", "am_adam", "wav", "Bearer secret-key")
    }
    with pytest.raises(BadRequestError, match=r"speech_config\.language"):
        stream(upstream, "hi", response_modalities=["audio"], generation_config={"speech_config": {"language": "en"}})


# ---- what cannot be done: 400s that name the field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"response_format": {"type": "audio", "mime_type": "audio/mp3"}}, "response_format.mime_type"),
        ({"response_format": {"type": "audio", "bit_rate": 64000}}, "response_format.bit_rate"),
        ({"response_format": {"type": "audio", "delivery": "uri"}}, "response_format.delivery"),
        ({"response_format": {"type": "audio", "sample_rate": 4000}}, "response_format.sample_rate"),
        ({"response_format": [{"type": "audio"}, {"type": "audio"}]}, "more than one audio format"),
        ({"response_modalities": ["audio"], "generation_config": {"speech_config": {"voice": "kore"}}},
         "speech_config.voice"),
        ({"response_modalities": ["audio"], "generation_config": {"speech_config": {"language": "fr"}}},
         "speech_config.language"),
        ({"response_modalities": ["audio"], "generation_config": {"speech_config": {"pitch": "high"}}},
         "unknown field 'pitch'"),
        ({"response_modalities": ["audio"],
          "generation_config": {"speech_config": [{"voice": "a", "speaker": "A"}, {"voice": "b", "speaker": "B"}]}},
         "2 speakers"),
        ({"generation_config": {"speech_config": {"voice": "en_US-joe-medium"}}}, "needs audio output"),
        ({"response_modalities": ["video"]}, "response_modalities"),
    ],
)  # fmt: skip
def test_what_the_configuration_cannot_do_is_a_400_that_names_it(
    piper: LiveServer, fields: dict[str, Any], named: str
) -> None:
    with piper.http() as http:
        response = http.post("/v1beta/interactions", json={"model": "m", "input": "hi", **fields})
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


def test_without_a_speech_backend_audio_is_a_400_that_says_what_to_configure(tmp_path: Path) -> None:
    server = next(serve(tmp_path, {"backend": "none"}))
    try:
        with pytest.raises(BadRequestError, match=r"audio output.*\[speech\]"):
            stream(server, "hi", response_modalities=["audio"])
        assert [s["type"] for s in check_stream(stream(server, scripted_text("Fine.")))] == ["model_output"]
    finally:
        server.stop()
