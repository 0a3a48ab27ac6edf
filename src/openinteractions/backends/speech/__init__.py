"""Text-to-speech backends for audio output: Piper, espeak-ng, or an OpenAI-compatible ``/v1/audio/speech``."""

from __future__ import annotations

from ...config import SpeechSettings
from .base import Pcm, SpeechBackend, SpeechError, VoiceChoice
from .espeak import EspeakSpeech, espeak_program
from .openai import OpenAISpeech
from .piper import PiperSpeech, packaged_voice, piper_available

__all__ = ["Pcm", "Speech", "SpeechBackend", "SpeechError", "VoiceChoice", "build_speech"]


class Speech:
    """The server's speech backend, or why it has none (said in the 400 of a request for audio)."""

    def __init__(self, backend: SpeechBackend | None, missing: str = "") -> None:
        self.backend = backend
        self.missing = missing

    async def aclose(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()


def build_speech(settings: SpeechSettings) -> Speech:
    """The configured backend; ``auto`` takes the first that this machine has. A backend named in the settings
    that cannot start is a configuration error (``ValueError``) at startup, not a surprise in a request."""
    kind = settings.backend
    if kind == "auto":
        if piper_available() and (settings.voice or packaged_voice()):
            kind = "piper"
        elif espeak_program():
            kind = "espeak-ng"
        else:
            return Speech(None, "neither piper-tts (with a voice) nor espeak-ng is installed: see [speech]")
    if kind == "none":
        return Speech(None, "[speech] backend is 'none'")
    return Speech(_backend(kind, settings))


def _backend(kind: str, settings: SpeechSettings) -> SpeechBackend:
    if kind == "piper":
        if not piper_available():
            raise ValueError("[speech] backend 'piper' needs the piper-tts package")
        return PiperSpeech(settings.voice, settings.voices, length_scale=1.0 / settings.speed)
    if kind == "espeak-ng":
        program = espeak_program()
        if program is None:
            raise ValueError("[speech] backend 'espeak-ng' needs the espeak-ng program (apt-get install espeak-ng)")
        return EspeakSpeech(program, settings.voice, settings.voices, round(175 * settings.speed))
    if not settings.base_url:
        raise ValueError("[speech] backend 'openai' needs base_url")
    return OpenAISpeech(settings.base_url, settings.model, settings.voice or "alloy", settings.voices,
                        settings.api_key, settings.timeout_seconds)  # fmt: skip
