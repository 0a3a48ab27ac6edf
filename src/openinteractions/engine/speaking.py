"""Audio output: the model's text, spoken sentence by sentence by the server's speech backend and streamed as
``audio`` deltas in the same ``model_output`` step (``response_modalities: ["audio"]``).

The request's side (``audio_output``: the plan, or a 400 that names the field) and the run's side
(``SpeakingWriter``, a step writer whose model text is also spoken) live here; the run only picks the writer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import wave
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..backends.base import BackendError
from ..backends.speech import Speech, SpeechBackend, SpeechError, VoiceChoice
from ..backends.speech.audio import DEFAULT_SAMPLE_RATE, ENCODINGS, audio_tokens, encode, resample
from ..backends.speech.sentences import SentenceSplitter
from ..errors import invalid_argument, not_supported
from ..schema.deltas import AudioDelta
from ..schema.events import ChunkEvent, Event
from ..schema.generation import AudioResponseFormat, TextResponseFormat
from ..schema.requests import CreateInteractionRequest
from ..schema.usage import ModalityTokens, Usage
from .signatures import ThoughtSigner
from .steps import Emit, StepWriter
from .validate import asks_for_audio

_SPEAKER_FIELDS = frozenset({"voice", "language", "speaker"})
_SAMPLE_RATES = range(8_000, 48_001)


@dataclass(frozen=True)
class SpeechPlan:
    backend: SpeechBackend
    choice: VoiceChoice
    mime_type: str  # audio/l16 (raw PCM, Gemini's) or audio/wav (one WAV file per delta)
    sample_rate: int
    show_text: bool  # the text is streamed as well: "text" was asked for besides "audio"


def audio_output(req: CreateInteractionRequest, speech: Speech) -> SpeechPlan | None:
    """The audio the request asks for, or None; a 400 that names the field for what cannot be done."""
    if not asks_for_audio(req):
        return None  # a speech_config without audio output is validate.check_capabilities's 400
    formats = req.response_format if isinstance(req.response_format, list) else [req.response_format]
    audio_formats = [f for f in formats if isinstance(f, AudioResponseFormat)]
    modalities = req.response_modalities or []
    config = req.generation_config.speech_config if req.generation_config else None
    if len(audio_formats) > 1:
        raise invalid_argument("'response_format' lists more than one audio format")
    if speech.backend is None:
        raise not_supported("audio output", f"not configured on this server: {speech.missing}")
    fmt = audio_formats[0] if audio_formats else AudioResponseFormat()
    choice = _voice_choice(config)
    problem = speech.backend.problem(choice)
    if problem is not None:
        raise invalid_argument(f"'generation_config.speech_config.{problem[0]}': {problem[1]}")
    shows_text = "text" in modalities or any(isinstance(f, TextResponseFormat) for f in formats)
    return SpeechPlan(speech.backend, choice, *_encoding(fmt), show_text=shows_text)


def _voice_choice(config: dict[str, Any] | list[dict[str, Any]] | None) -> VoiceChoice:
    """``speech_config`` as one speaker: ``{voice, language, speaker}``, ``{"speakers": [one]}`` or ``[one]``."""
    if config is None:
        return VoiceChoice()
    speakers: Any = config
    field = "generation_config.speech_config"
    if isinstance(config, dict) and "speakers" in config:
        if set(config) != {"speakers"}:
            raise invalid_argument(f"'{field}' takes either 'speakers' or one speaker's fields, not both")
        speakers, field = config["speakers"], f"{field}.speakers"
    if isinstance(speakers, dict):
        speakers = [speakers]
    if not isinstance(speakers, list) or not all(isinstance(s, dict) for s in speakers):
        raise invalid_argument(f"'{field}' must be a list of speakers, each {{voice, language, speaker}}")
    if len(speakers) > 1:
        raise not_supported(f"'{field}' with {len(speakers)} speakers", "not supported: one voice speaks")
    one: dict[str, Any] = speakers[0] if speakers else {}
    for key, value in one.items():
        if key not in _SPEAKER_FIELDS:
            raise invalid_argument(f"'{field}' has an unknown field {key!r} (voice, language, speaker)")
        if not isinstance(value, str) or not value:
            raise invalid_argument(f"'{field}.{key}' must be a non-empty string")
    return VoiceChoice(voice=one.get("voice"), language=one.get("language"))


def _encoding(fmt: AudioResponseFormat) -> tuple[str, int]:
    mime_type = (fmt.mime_type or "audio/l16").lower()
    if mime_type not in ENCODINGS:
        raise not_supported(f"'response_format.mime_type' {fmt.mime_type!r}",
                            f"not produced by this server (it produces {' and '.join(ENCODINGS)})")  # fmt: skip
    if fmt.bit_rate is not None:
        raise not_supported("'response_format.bit_rate'", "not supported: PCM and WAV have no bit rate to choose")
    if fmt.delivery not in (None, "inline"):
        raise not_supported(f"'response_format.delivery' {fmt.delivery!r}", "not supported (only 'inline')")
    rate = DEFAULT_SAMPLE_RATE if fmt.sample_rate is None else fmt.sample_rate
    if rate not in _SAMPLE_RATES:
        raise invalid_argument(f"'response_format.sample_rate' {rate} is outside 8000-48000 Hz")
    return mime_type, rate


class SpeakingWriter(StepWriter):
    """A step writer whose model text is also spoken. Each sentence goes to the speech backend as soon as it is
    complete, while the model writes on, and its audio is emitted the moment it is ready, in the order of the
    sentences, within the open ``model_output`` step: closing the step first waits for the audio of everything
    said in it. Every emit goes through one lock, so audio never lands between another event's awaits. A run
    speaks one sentence at a time."""

    def __init__(self, plan: SpeechPlan, emit: Emit, signer: ThoughtSigner, summaries: bool) -> None:
        self._lock = asyncio.Lock()
        self._outer_emit = emit
        super().__init__(self._locked, signer, summaries)
        self._plan = plan
        self._sentences = SentenceSplitter()
        self._spoken: deque[asyncio.Task[None]] = deque()

    async def _locked(self, event: Event | ChunkEvent) -> Any:
        async with self._lock:
            return await self._outer_emit(event)

    async def text(self, text: str) -> None:
        if self.open_step != "model_output":
            await self._ensure("model_output")
        if self._plan.show_text and text:
            await super().text(text)
        for sentence in self._sentences.feed(text):
            self._speak(sentence)

    async def close(self, *, strict: bool = True) -> None:
        if self.open_step == "model_output":
            if strict:
                rest = self._sentences.flush()
                if rest is not None:
                    self._speak(rest)
                while self._spoken:
                    await self._spoken[0]
                    self._spoken.popleft()
            else:  # a failure or a cancel: what was not spoken yet is not waited for
                self._drop()
        await super().close(strict=strict)

    def _speak(self, sentence: str) -> None:
        before = self._spoken[-1] if self._spoken else None
        self._spoken.append(asyncio.create_task(self._say(sentence, before)))

    async def _say(self, sentence: str, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait([before])  # one sentence at a time, in order
            if before.cancelled() or before.exception() is not None:
                return  # the run fails with the first failure; nothing after it is said
        plan = self._plan
        try:
            pcm = await plan.backend.synthesize(sentence, plan.choice)
        except SpeechError as exc:
            raise BackendError(f"speech synthesis failed: {exc.message}", exc.code) from exc
        data = encode(resample(pcm, plan.sample_rate), plan.mime_type)
        delta = AudioDelta(data=base64.b64encode(data).decode(), mime_type=plan.mime_type,
                           sample_rate=plan.sample_rate, channels=1)  # fmt: skip
        await self._delta(delta)  # the step is open: close() waits for this before it closes it

    def _drop(self) -> None:
        self._sentences.flush()
        for task in self._spoken:
            if task.done() and not task.cancelled():
                task.exception()  # seen: the run is ending for another reason
            task.cancel()
        self._spoken.clear()


def speaking_writer(plan: SpeechPlan | None, emit: Emit, signer: ThoughtSigner, summaries: bool) -> StepWriter:
    """The run's step writer: one that speaks when the request asked for audio."""
    if plan is None:
        return StepWriter(emit, signer, summaries)
    return SpeakingWriter(plan, emit, signer, summaries)


def with_audio_usage(usage: Usage | None, steps: list[dict[str, Any]]) -> Usage | None:
    """Usage with the audio output counted by modality (32 tokens a second, as Gemini counts audio), from the
    audio blocks of the output steps (so a run taken over after a crash counts what it spoke before)."""
    seconds = sum(_seconds(block) for step in steps for block in step.get("content") or [] if step.get("type")
                  == "model_output" and block.get("type") == "audio")  # fmt: skip
    if usage is None or not seconds:
        return usage
    audio = audio_tokens(seconds)
    text = usage.total_output_tokens or 0
    return usage.model_copy(update={
        "total_tokens": (usage.total_tokens or 0) + audio,
        "total_output_tokens": text + audio,
        "output_tokens_by_modality": [ModalityTokens(modality="text", tokens=text),
                                      ModalityTokens(modality="audio", tokens=audio)],
    })  # fmt: skip


def _seconds(block: dict[str, Any]) -> float:
    try:
        data = base64.b64decode(block.get("data") or "")
    except (binascii.Error, ValueError):
        return 0.0
    if block.get("mime_type") == "audio/wav":
        try:
            with wave.open(io.BytesIO(data), "rb") as wav:
                return wav.getnframes() / wav.getframerate()
        except (wave.Error, EOFError):
            return 0.0
    rate = block.get("sample_rate") or DEFAULT_SAMPLE_RATE
    return len(data) / (2 * (block.get("channels") or 1) * rate)
