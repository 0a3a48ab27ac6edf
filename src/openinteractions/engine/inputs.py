"""A conversation's image, audio, video and document parts → what the model that gets it can take.

A part whose type the model takes natively (``Capabilities.input_modalities``) goes to it inline: its bytes
checked and, for a ``uri``, fetched by the server, so that no backend ever fetches a caller's URL itself. For a
model that takes no such part, documents (PDF, HTML, text, CSV, markdown...) become text (``documents.py``) and
audio a transcript (``transcribe.py``); images and video cannot become text, and are refused. Everything a
configuration cannot take is a 400 that names the part and says why, before the interaction exists.

The converted steps are what the backend sees (``GenerationRequest.history``); the interaction keeps the parts
as they were sent. A chain sends its earlier parts again each turn: what they became is kept (by the hash of
their bytes) so that a recording is not transcribed again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from ..backends.base import Capabilities
from ..config import InputsSettings, UrlContextSettings
from ..errors import ApiError, invalid_argument
from ..schema.content import AudioContent, Content, DocumentContent, ImageContent, TextContent, VideoContent
from ..schema.steps import Step, UserInputStep
from ..tools.net import AddressPolicy, Refused, SafeFetcher, TooManyRedirects
from . import documents
from .transcribe import Transcriber, TranscriptionFailed, transcriber_for

Media = ImageContent | AudioContent | VideoContent | DocumentContent
READ_AS_TEXT = frozenset({"document", "audio"})  # what a model without the modality can still be given as text
_CACHE_ENTRIES = 256


@dataclass(frozen=True)
class Where:
    """A part's place, as a 400 names it."""

    kind: str
    step: int
    index: int
    history: bool = False  # a step of the previous interactions, not of this request's input

    def __str__(self) -> str:
        steps = "step {} of the previous interactions" if self.history else "input step {}"
        return f"the {self.kind} part ({steps.format(self.step)}, content {self.index})"


class InputReader:
    def __init__(
        self,
        settings: InputsSettings,
        url_context: UrlContextSettings,
        transcriber: Transcriber | None = None,
        fetcher: SafeFetcher | None = None,
    ) -> None:
        self.settings = settings
        self.transcriber = transcriber if transcriber is not None else transcriber_for(settings.transcription)
        self.fetcher = fetcher or SafeFetcher(
            AddressPolicy(url_context.allow_networks),
            max_bytes=settings.max_part_bytes + 1,  # one more: a part that fills it is over the limit
            timeout=url_context.timeout_seconds,
            max_redirects=url_context.max_redirects,
            user_agent="OpenInteractions-inputs/0.1",
        )
        self.limits = documents.Limits(settings.max_pdf_pages, settings.max_text_chars)
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()  # (sha256, kind) → the text it became

    async def given(self, steps: list[Step], caps: Capabilities, model: str, turn_start: int) -> list[Step]:
        """``steps`` as ``model`` is given them; ``turn_start``: where this request's own input begins."""
        jobs: dict[tuple[int, int], asyncio.Task[Content]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for n, step in enumerate(steps):
                    if not isinstance(step, UserInputStep):
                        continue
                    for j, block in enumerate(step.content or []):
                        if not isinstance(block, TextContent):
                            history = n < turn_start
                            where = Where(block.type, n if history else n - turn_start, j, history)
                            jobs[n, j] = group.create_task(self._part(block, where, caps, model))
        except* ApiError as group:  # the first part refused (the others were cancelled, or refused too)
            raise group.exceptions[0] from None
        if not jobs:
            return steps
        out = list(steps)
        for n, step in enumerate(steps):
            if isinstance(step, UserInputStep) and any((n, j) in jobs for j in range(len(step.content or []))):
                content = [jobs[n, j].result() if (n, j) in jobs else b for j, b in enumerate(step.content or [])]
                out[n] = UserInputStep(content=content)
        return out

    async def _part(self, block: Media, where: Where, caps: Capabilities, model: str) -> Content:
        if block.type in caps.input_modalities:
            data, mime_type = await self._bytes(block, where)
            return block.model_copy(
                update={"data": base64.b64encode(data).decode(), "uri": None, "mime_type": mime_type}
            )
        if block.type not in READ_AS_TEXT:
            takes = ", ".join(sorted(caps.input_modalities))
            raise invalid_argument(
                f"{where}: model {model!r} takes no {block.type} input (it takes {takes}), and {block.type} cannot "
                f"be turned into text; {serving_hint(block.type)}"
            )
        if isinstance(block, DocumentContent):
            return await self._document(block, where)
        assert isinstance(block, AudioContent)
        return await self._audio(block, where, model)

    # ---- text for text-only models ----------------------------------------------------------------------

    async def _document(self, block: DocumentContent, where: Where) -> TextContent:
        declared = documents.media_type(block.mime_type)
        if declared and declared not in documents.READABLE:
            raise invalid_argument(f"{where}: {_unreadable_type(declared)}")
        data, mime_type = await self._bytes(block, where)
        key = (hashlib.sha256(data).hexdigest(), f"document:{mime_type}")
        text = self._texts.get(key)
        if text is None:
            try:
                extracted = await asyncio.to_thread(documents.extract, data, mime_type, self.limits)
            except documents.Unreadable as exc:
                raise invalid_argument(f"{where}: {exc}") from None
            text = _document_text(extracted, mime_type, self.settings)
            self._keep(key, text)
        return TextContent(text=text)

    async def _audio(self, block: AudioContent, where: Where, model: str) -> TextContent:
        transcriber = self.transcriber
        if transcriber is None:
            raise invalid_argument(
                f"{where}: model {model!r} takes no audio input and no transcription backend is configured "
                "(set [inputs.transcription] backend to 'pocketsphinx' or 'openai')"
            )
        declared = block.mime_type or ""
        if declared and (problem := transcriber.refuses(declared)):
            raise invalid_argument(f"{where}: {problem}")
        data, mime_type = await self._bytes(block, where)
        if not declared and (problem := transcriber.refuses(mime_type)):
            raise invalid_argument(f"{where}: {problem}")
        key = (hashlib.sha256(data).hexdigest(), f"audio:{transcriber.name}")
        text = self._texts.get(key)
        if text is None:
            try:
                spoken = await transcriber.transcribe(data, mime_type, block.sample_rate)
            except TranscriptionFailed as exc:
                if exc.client_fault:
                    raise invalid_argument(f"{where}: {exc.message}") from None
                raise ApiError(503, f"{where} could not be transcribed: {exc.message}") from None
            text = f"[Transcript of the audio]\n{spoken[: self.settings.max_text_chars]}"
            self._keep(key, text)
        return TextContent(text=text)

    def _keep(self, key: tuple[str, str], text: str) -> None:
        self._texts[key] = text
        self._texts.move_to_end(key)
        while len(self._texts) > _CACHE_ENTRIES:
            self._texts.popitem(last=False)

    # ---- a part's bytes ---------------------------------------------------------------------------------

    async def _bytes(self, block: Media, where: Where) -> tuple[bytes, str]:
        """The part's bytes and media type: inline ``data`` decoded, or its ``uri`` read."""
        if block.data is not None and block.uri is not None:
            raise invalid_argument(f"{where} has both 'data' and 'uri': send one of them")
        if block.data is not None:
            if not block.mime_type:
                raise invalid_argument(f"{where} needs 'mime_type' with inline 'data'")
            return self._decoded(block.data, where), documents.media_type(block.mime_type)
        if not block.uri:
            raise invalid_argument(f"{where} has neither 'data' nor 'uri'")
        if block.uri.startswith("data:"):
            return self._data_uri(block.uri, block.mime_type, where)
        return await self._fetched(block.uri, block.mime_type, where)

    def _decoded(self, data: str, where: Where) -> bytes:
        limit = self.settings.max_part_bytes
        if len(data) // 4 * 3 > limit + 2:
            raise _too_large(where, limit)
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error:
            try:  # the url-safe alphabet, which some clients send
                raw = base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
            except binascii.Error:
                raise invalid_argument(f"{where}: 'data' is not valid base64") from None
        if len(raw) > limit:
            raise _too_large(where, limit)
        return raw

    def _data_uri(self, uri: str, mime_type: str | None, where: Where) -> tuple[bytes, str]:
        head, sep, payload = uri[5:].partition(",")
        if not sep or not head.endswith(";base64"):
            raise invalid_argument(f"{where}: a 'data:' uri must be base64 ('data:<type>;base64,<data>')")
        return self._decoded(payload, where), documents.media_type(mime_type or head.removesuffix(";base64"))

    async def _fetched(self, uri: str, mime_type: str | None, where: Where) -> tuple[bytes, str]:
        scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
        if scheme not in ("http", "https"):
            raise invalid_argument(
                f"{where}: its uri {uri[:200]!r} cannot be read: this server serves no Files API and reads only "
                "http(s) URIs; send the bytes inline as 'data'"
            )
        if not self.settings.fetch_uris:
            raise invalid_argument(f"{where}: parts given by uri are not fetched here (inputs.fetch_uris is off)")
        try:
            fetched = await self.fetcher.fetch(uri)
        except Refused as exc:
            raise invalid_argument(f"{where}: its uri may not be fetched: {exc.reason}") from None
        except (httpx.HTTPError, OSError, TimeoutError, ValueError, TooManyRedirects) as exc:
            raise invalid_argument(f"{where}: its uri could not be fetched: {str(exc) or type(exc).__name__}") from None
        if fetched.status_code >= 400:
            raise invalid_argument(f"{where}: fetching its uri answered HTTP {fetched.status_code}")
        if fetched.truncated:
            raise _too_large(where, self.settings.max_part_bytes)
        kind = documents.media_type(mime_type or fetched.content_type)
        if not kind:
            raise invalid_argument(f"{where}: its uri's answer has no content type; set 'mime_type'")
        return fetched.body, kind


def serving_hint(kind: str) -> str:
    """How to serve a model that takes ``kind`` input natively, for the 400 that refuses it."""
    llamacpp = ", or a llamacpp model with a multimodal projector (mmproj)" if kind == "image" else ""
    return f"serve a model that takes it (an openai backend with '{kind}' in input_modalities{llamacpp})"


def _too_large(where: Where, limit: int) -> ApiError:
    return invalid_argument(f"{where} is larger than {limit} bytes (inputs.max_part_bytes)")


def _unreadable_type(kind: str) -> str:
    return (
        f"documents of type {kind!r} cannot be read as text (readable: PDF, HTML, plain text, CSV, markdown, JSON, "
        "XML), and the model takes no documents"
    )


def _document_text(extracted: documents.Extracted, mime_type: str, settings: InputsSettings) -> str:
    about = mime_type
    if extracted.pages is not None:
        about += f", {extracted.pages} page{'s' if extracted.pages != 1 else ''} read"
    if extracted.cut:
        about += f", cut at inputs.max_pdf_pages={settings.max_pdf_pages} / max_text_chars={settings.max_text_chars}"
    return f"[Document ({about})]\n{extracted.text}\n[End of document]"
