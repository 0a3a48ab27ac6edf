"""Audio encodings of the API: raw PCM (``audio/l16``, as Gemini sends it) and WAV; resampling; audio tokens."""

from __future__ import annotations

import io
import wave

import numpy as np

from .base import Pcm, SpeechError

ENCODINGS = ("audio/l16", "audio/wav")
DEFAULT_SAMPLE_RATE = 24_000  # Gemini's speech output rate: clients written for it assume this
TOKENS_PER_SECOND = 32  # Gemini's count of audio tokens


def resample(pcm: Pcm, rate: int) -> Pcm:
    """Linear interpolation to ``rate``: enough for speech, whose energy is far below either Nyquist limit."""
    if pcm.sample_rate == rate or not pcm.samples:
        return Pcm(pcm.samples, rate, pcm.channels)
    frames = np.frombuffer(pcm.samples, dtype="<i2").reshape(-1, pcm.channels).astype(np.float32)
    count = max(1, round(len(frames) * rate / pcm.sample_rate))
    at = np.arange(count) * (pcm.sample_rate / rate)
    source = np.arange(len(frames))
    columns = [np.interp(at, source, frames[:, c]) for c in range(pcm.channels)]
    out = np.clip(np.round(np.stack(columns, axis=1)), -32768, 32767).astype("<i2")
    return Pcm(out.tobytes(), rate, pcm.channels)


def encode(pcm: Pcm, mime_type: str) -> bytes:
    """The bytes of one ``audio`` delta: the samples as they are, or a whole WAV file."""
    if mime_type == "audio/l16":
        return pcm.samples
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(pcm.channels)
        wav.setsampwidth(2)
        wav.setframerate(pcm.sample_rate)
        wav.writeframes(pcm.samples)
    return out.getvalue()


def decode_wav(data: bytes, source: str) -> Pcm:
    """A WAV file's 16-bit PCM. ``espeak-ng --stdout`` writes a streaming header whose sizes are wrong, so the
    frames are read to the end of the bytes rather than to the size the header claims."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise SpeechError(f"{source} returned {8 * wav.getsampwidth()}-bit audio, not 16-bit PCM")
            rate, channels = wav.getframerate(), wav.getnchannels()
            samples = wav.readframes(len(data))
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"{source} returned audio that is not a PCM WAV file ({exc})") from exc
    usable = len(samples) - len(samples) % (2 * channels)
    return Pcm(samples[:usable], rate, channels)


def audio_tokens(seconds: float) -> int:
    return round(seconds * TOKENS_PER_SECOND)
