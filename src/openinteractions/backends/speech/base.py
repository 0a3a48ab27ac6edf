"""What a text-to-speech backend is: text and a voice in, 16-bit PCM out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SpeechError(Exception):
    """Synthesis failed (the engine crashed, an upstream refused); the run fails with ``code``."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Pcm:
    """Signed 16-bit little-endian samples, interleaved when there are several channels."""

    samples: bytes
    sample_rate: int
    channels: int = 1

    @property
    def seconds(self) -> float:
        return len(self.samples) / (2 * self.channels * self.sample_rate)


@dataclass(frozen=True, slots=True)
class VoiceChoice:
    """What a request asked for in ``speech_config`` (each ``None`` when it did not say)."""

    voice: str | None = None
    language: str | None = None


class SpeechBackend(Protocol):
    name: str

    def problem(self, choice: VoiceChoice) -> tuple[str, str] | None:
        """Why this backend cannot speak with ``choice``: the request field at fault and the reason; None if it
        can. Called before the interaction exists, so that the answer is a 400."""

    async def synthesize(self, text: str, choice: VoiceChoice) -> Pcm:
        """One piece of text (a sentence or a few) spoken; raises ``SpeechError``."""

    async def aclose(self) -> None: ...


def same_language(asked: str, spoken: str) -> bool:
    """``en-US``, ``en_us`` and ``en`` all ask for ``en-us``; ``en-GB`` does not."""
    a, s = asked.lower().replace("_", "-").split("-"), spoken.lower().replace("_", "-").split("-")
    return a[0] == s[0] and (len(a) == 1 or len(s) == 1 or a[1] == s[1])
