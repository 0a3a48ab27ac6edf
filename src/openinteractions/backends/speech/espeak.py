"""espeak-ng, Debian's formant synthesizer: no weights, a hundred languages, run as a program per sentence."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from .audio import decode_wav
from .base import Pcm, SpeechError, VoiceChoice, same_language

DEFAULT_VOICE = "en-us"


def espeak_program() -> str | None:
    return shutil.which("espeak-ng")


class EspeakSpeech:
    name = "espeak-ng"

    def __init__(self, program: str, voice: str | None, voices: dict[str, str], words_per_minute: int) -> None:
        self._program = program
        self._default = voice or DEFAULT_VOICE
        self._aliases = voices
        self._speed = words_per_minute
        self._known = _installed_voices(program)
        if self._default.split("+")[0] not in self._known:  # a voice, or a voice+variant ("en-us+f3")
            raise ValueError(f"[speech] voice {self._default!r} is not an espeak-ng voice (espeak-ng --voices)")

    def problem(self, choice: VoiceChoice) -> tuple[str, str] | None:
        if choice.voice is not None and self._resolve(choice.voice).split("+")[0] not in self._known:
            return "voice", f"espeak-ng has no voice {choice.voice!r} (its languages, e.g. 'en-us', or [speech.voices])"
        if choice.language is None:
            return None
        if choice.voice is None and choice.language.lower() not in self._known:
            return "language", f"espeak-ng does not speak {choice.language!r}"
        if choice.voice is not None and not same_language(choice.language, self._resolve(choice.voice).split("+")[0]):
            return "language", f"voice {choice.voice!r} does not speak {choice.language!r}"
        return None

    async def synthesize(self, text: str, choice: VoiceChoice) -> Pcm:
        voice = self._resolve(choice.voice or (choice.language or "").lower() or self._default)
        # The text goes in on stdin, never as an argument: it cannot be taken for an option.
        process = await asyncio.create_subprocess_exec(
            self._program, "--stdout", "-v", voice, "-s", str(self._speed),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate(text.encode())
        if process.returncode != 0:
            raise SpeechError(f"espeak-ng failed ({process.returncode}): {err.decode(errors='replace')[:200]}")
        return decode_wav(out, "espeak-ng")

    def _resolve(self, voice: str) -> str:
        return self._aliases.get(voice, voice).lower()

    async def aclose(self) -> None:
        return None


def _installed_voices(program: str) -> frozenset[str]:
    """The language codes and voice files ``espeak-ng --voices`` lists (either names a voice for ``-v``)."""
    listing = subprocess.run([program, "--voices"], capture_output=True, text=True, timeout=30, check=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            names.update((fields[1].lower(), fields[4].lower(), fields[4].rsplit("/", 1)[-1].lower()))
    return frozenset(names)
