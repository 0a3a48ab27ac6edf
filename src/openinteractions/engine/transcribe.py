"""Speech → text for models that cannot hear: an OpenAI-compatible ``/audio/transcriptions`` server
(whisper.cpp's server, faster-whisper servers, LocalAI, vLLM, a hosted API) or PocketSphinx in-process.

PocketSphinx is the default because its PyPI package ships an English acoustic model, language model and
dictionary: it runs offline with nothing downloaded. It is far less accurate than Whisper; configure a
transcription server for real use. It reads WAV (any rate, 8 or 16 bit, mono or stereo) and raw 16-bit PCM.
"""

from __future__ import annotations

import asyncio
import io
import os
import wave
from typing import Protocol

import httpx

from ..config import TranscriptionSettings
from ..egress import Egress, OriginPolicy, Refused
from .documents import media_type

_SPHINX_RATE = 16_000
_SPHINX_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/l16"})
_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
    "audio/aiff": "aiff",
    "audio/aac": "aac",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/m4a": "m4a",
    "audio/opus": "opus",
    "audio/webm": "webm",
}


class TranscriptionFailed(Exception):
    """The audio could not be transcribed; ``client_fault``: because of the audio (a 400), else the service."""

    def __init__(self, message: str, client_fault: bool) -> None:
        super().__init__(message)
        self.message = message
        self.client_fault = client_fault


class Transcriber(Protocol):
    name: str

    def refuses(self, mime_type: str) -> str | None:
        """Why audio of this type cannot be transcribed, or None."""

    async def transcribe(self, data: bytes, mime_type: str, sample_rate: int | None) -> str: ...


def transcriber_for(settings: TranscriptionSettings) -> Transcriber | None:
    if settings.backend == "openai":
        assert settings.base_url is not None  # the settings' validator requires it
        return OpenAITranscriber(settings)
    if settings.backend == "pocketsphinx":
        return SphinxTranscriber()
    return None


class OpenAITranscriber:
    name = "openai"

    def __init__(self, settings: TranscriptionSettings) -> None:
        assert settings.base_url is not None
        self.url = settings.base_url.rstrip("/") + "/audio/transcriptions"
        self.settings = settings
        self.egress = Egress("upstream", OriginPolicy([settings.base_url]))

    def refuses(self, mime_type: str) -> str | None:
        return None  # the server decides; its 4xx says why

    async def transcribe(self, data: bytes, mime_type: str, sample_rate: int | None) -> str:
        settings = self.settings
        kind = media_type(mime_type)
        fields = {"model": settings.model, "response_format": "json"}
        if settings.language:
            fields["language"] = settings.language
        files = {"file": (f"audio.{_EXTENSIONS.get(kind, 'bin')}", data, kind or "application/octet-stream")}
        headers = {"authorization": f"Bearer {key}"} if (key := self._key()) else {}
        try:
            async with self.egress.client(timeout=settings.timeout_seconds) as client:
                response = await client.post(self.url, data=fields, files=files, headers=headers)
        except Refused as exc:
            raise TranscriptionFailed(f"the transcription server is not reachable: {exc.reason}", False) from None
        except (httpx.HTTPError, OSError) as exc:
            raise TranscriptionFailed(f"the transcription server failed: {type(exc).__name__}", False) from None
        if response.status_code >= 400:
            client_fault = 400 <= response.status_code < 500 and response.status_code not in (401, 403, 404, 429)
            detail = response.text[:300]
            if key:
                detail = detail.replace(key, "***")
            raise TranscriptionFailed(
                f"the transcription server answered HTTP {response.status_code}: {detail}", client_fault
            )
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError):
            raise TranscriptionFailed("the transcription server's answer has no 'text'", False) from None
        return str(text).strip()

    def _key(self) -> str | None:
        name = self.settings.api_key_env
        return os.environ.get(name) or None if name else None


class SphinxTranscriber:
    name = "pocketsphinx"

    def __init__(self) -> None:
        self._lock = asyncio.Lock()  # one decoder, loaded on first use (about a second), decodes one at a time
        self._decoder: object | None = None

    def refuses(self, mime_type: str) -> str | None:
        if media_type(mime_type) not in _SPHINX_TYPES:
            return (
                f"the built-in transcriber (PocketSphinx) reads WAV only, not {media_type(mime_type)!r}; "
                "configure an OpenAI-compatible transcription server under [inputs.transcription]"
            )
        try:
            import pocketsphinx  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
        except ImportError:
            return "the built-in transcriber needs the pocketsphinx package, which is not installed"
        return None

    async def transcribe(self, data: bytes, mime_type: str, sample_rate: int | None) -> str:
        if media_type(mime_type) == "audio/l16":
            pcm = _resample(data, sample_rate or _SPHINX_RATE, 1)
        else:
            pcm = _wav_pcm(data)
        async with self._lock:
            return await asyncio.to_thread(self._decode, pcm)

    def _decode(self, pcm: bytes) -> str:
        from pocketsphinx import Decoder  # type: ignore[import-untyped, unused-ignore]

        if self._decoder is None:
            self._decoder = Decoder(samprate=_SPHINX_RATE, loglevel="FATAL")
        decoder = self._decoder
        assert isinstance(decoder, Decoder)
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""


def _wav_pcm(data: bytes) -> bytes:
    """A WAV file as 16 kHz mono 16-bit PCM, what PocketSphinx decodes."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TranscriptionFailed(f"the WAV audio cannot be read: {exc}", True) from None
    if width not in (1, 2):
        raise TranscriptionFailed(f"WAV audio of {8 * width}-bit samples is not read (8 or 16 bit)", True)
    if width == 1:  # unsigned 8-bit → signed 16-bit
        import numpy as np

        frames = ((np.frombuffer(frames, np.uint8).astype("<i2") - 128) << 8).tobytes()
    return _resample(frames, rate, channels)


def _resample(pcm: bytes, rate: int, channels: int) -> bytes:
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % (2 * channels)], dtype="<i2").astype(np.float32)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != _SPHINX_RATE and samples.size:
        count = int(samples.size * _SPHINX_RATE / rate)
        samples = np.interp(np.linspace(0, samples.size - 1, count), np.arange(samples.size), samples).astype(
            np.float32
        )
    return bytes(samples.astype("<i2").tobytes())
