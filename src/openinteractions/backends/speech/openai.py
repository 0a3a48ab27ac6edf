"""Any OpenAI-compatible ``/v1/audio/speech``: LocalAI, Kokoro-FastAPI, openedai-speech, Speaches, OpenAI…

Each sentence is one request for ``response_format: "wav"``; connections go out through the server's egress
point, to the configured origin and nowhere else.
"""

from __future__ import annotations

import httpx

from ...egress import Egress, OriginPolicy, Refused
from .audio import decode_wav
from .base import Pcm, SpeechError, VoiceChoice


class OpenAISpeech:
    name = "openai"

    def __init__(
        self, base_url: str, model: str, voice: str, voices: dict[str, str], api_key: str | None, timeout: float
    ) -> None:
        self._url = base_url.rstrip("/") + "/audio/speech"
        self._model = model
        self._default = voice
        self._aliases = voices
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = Egress("speech", OriginPolicy([base_url])).client(timeout=timeout, headers=headers)

    def problem(self, choice: VoiceChoice) -> tuple[str, str] | None:
        if choice.language is not None:
            return "language", "an OpenAI-compatible speech upstream takes no language (the voice speaks the text's)"
        return None

    async def synthesize(self, text: str, choice: VoiceChoice) -> Pcm:
        voice = self._aliases.get(choice.voice or "", choice.voice or self._default)
        body = {"model": self._model, "input": text, "voice": voice, "response_format": "wav"}
        try:
            response = await self._client.post(self._url, json=body)
        except (httpx.HTTPError, OSError, Refused) as exc:
            raise SpeechError(f"the speech upstream could not be reached: {exc}") from exc
        if response.status_code != 200:
            detail = response.text[:200]
            raise SpeechError(f"the speech upstream answered {response.status_code}: {detail}")
        return decode_wav(response.content, "the speech upstream")

    async def aclose(self) -> None:
        await self._client.aclose()
