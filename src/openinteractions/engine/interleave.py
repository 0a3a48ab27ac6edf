"""Interleaved text and images: a text model paired with an image backend, served as one model.

``InterleavedBackend`` is a ``Backend`` that wraps the text model's, so the tool loop, server tools, usage,
cancellation and the step writer work for it unchanged. Asked for image output, it has the text model write its
answer in the structure of ``parts.py`` (under the JSON-schema grammar or ``json_schema`` where the model has
structured output; after a round of server tools, without the tools, so the structure holds) and reads it as it
streams: text goes out as text; at each image part the model output step is closed, a thought step (its
signature seals the image's description) is written, and the image, drawn by the image backend, opens the next
model output as an ``image`` delta, which the text after it continues: the layout of Gemini's image models.
Usage counts each image's output tokens (``sizing.image_tokens``) in ``output_tokens_by_modality``.
Without image output asked for, requests go to the text model as they are.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..backends.base import (
    Backend,
    BackendError,
    Finish,
    GenerationRequest,
    ImageChunk,
    ImageUsageReport,
    ModelEvent,
    StepBreak,
    TextChunk,
    ThoughtChunk,
)
from ..backends.images import ImageBackend, ImageBackends, ImageRequest
from ..backends.images.sizing import ImageOptionError, ImageShape, image_shape, image_tokens
from ..schema.content import TextContent
from ..schema.generation import TextResponseFormat
from ..schema.steps import ModelOutputStep, Step, ThoughtStep
from .parts import PARTS_INSTRUCTION, PARTS_SCHEMA, Image, PartsReader, Piece, Text


class PairOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str  # a served [models] name: the model that writes
    images: str  # an [images] name: the backend that draws
    max_images: int = 8  # per answer; image parts past it are left out


@dataclass
class _Plan:
    inner: GenerationRequest  # the text model's request, with its own plan
    shape: ImageShape | None  # None: no image output asked for


class InterleavedBackend:
    def __init__(self, text: Backend, images: ImageBackend, max_images: int = 8) -> None:
        self.text = text
        self.images = images
        self.max_images = max_images
        caps = text.capabilities
        self.capabilities = dataclasses.replace(
            caps,
            generation_config=caps.generation_config | {"image_config"},
            output_modalities=caps.output_modalities | {"image"},
            structured_output=False,  # the text's structure is the parts'
            continuation=False,  # a cut round starts again (the parts' JSON cannot be picked up mid-way)
        )

    async def aclose(self) -> None:
        return None  # the text model is a served model of its own, and the image backend is the registry's

    def prepare(self, request: GenerationRequest) -> _Plan:
        if request.image_format is None:
            inner = dataclasses.replace(request, history=described(request.history, request.thought_text), plan=None)
            inner.plan = self.text.prepare(inner)
            return _Plan(inner, None)
        try:
            shape = image_shape(self.images.limits, request.config.image_config, request.image_format)
        except ImageOptionError as exc:
            raise BackendError(str(exc), "invalid_argument") from exc
        inner = self._illustrating(request)
        inner.plan = self.text.prepare(inner)
        return _Plan(inner, shape)

    def _illustrating(self, request: GenerationRequest) -> GenerationRequest:
        """The text model's request: the parts' instruction and schema, earlier images as their descriptions; the
        tools only before any server tool has run this turn (then the answer is written under the schema)."""
        system = "\n\n".join(s for s in (request.system_instruction, PARTS_INSTRUCTION) if s)
        structured = self.text.capabilities.structured_output
        fmt = TextResponseFormat(mime_type="application/json", schema=PARTS_SCHEMA) if structured else None
        inner = dataclasses.replace(
            request,
            history=described(request.history, request.thought_text),
            system_instruction=system,
            response_format=fmt,
            image_format=None,
            plan=None,
        )
        if request.round > 0:
            inner.functions, inner.server_tools = [], []
        return inner

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[ModelEvent, None]:
        plan = request.plan if isinstance(request.plan, _Plan) else self.prepare(request)
        plan.inner.round, plan.inner.resume = request.round, request.resume
        if plan.shape is None:
            async with aclosing(self.text.generate(plan.inner)) as events:
                async for event in events:
                    yield event
            return
        async for event in self._interleave(plan.inner, plan.shape, request.config.seed):
            yield event

    async def _interleave(
        self, inner: GenerationRequest, shape: ImageShape, seed: int | None
    ) -> AsyncGenerator[ModelEvent, None]:
        reader = PartsReader()
        drawn, finish = 0, Finish("stop")
        async with aclosing(self.text.generate(inner)) as events:  # a cancelled run frees the text model at once
            async for event in events:
                if isinstance(event, TextChunk):
                    for piece in reader.feed(event.text):
                        async for out in self._piece(piece, drawn, shape, seed):
                            yield out
                        drawn += isinstance(piece, Image)
                elif isinstance(event, Finish):
                    finish = event  # after the last part
                else:
                    yield event
        for piece in reader.close():
            async for out in self._piece(piece, drawn, shape, seed):
                yield out
            drawn += isinstance(piece, Image)
        tokens = image_tokens(shape.width, shape.height) * min(drawn, self.max_images)
        if tokens:
            yield ImageUsageReport(output_tokens=tokens, image_output_tokens=tokens)
        yield finish

    async def _piece(
        self, piece: Piece, drawn: int, shape: ImageShape, seed: int | None
    ) -> AsyncGenerator[ModelEvent, None]:
        if isinstance(piece, Text):
            yield TextChunk(piece.text)
            return
        if drawn >= self.max_images:
            return
        yield StepBreak()
        yield ThoughtChunk(piece.description)  # the thought step's signature seals what the image shows
        yield StepBreak()
        image_seed = None if seed is None else seed + drawn
        image = await self.images.generate(
            ImageRequest(piece.description, shape.width, shape.height, shape.mime_type, image_seed)
        )
        yield ImageChunk(base64.b64encode(image.data).decode(), image.mime_type)


def described(history: list[Step], thought_text: Any) -> list[Step]:
    """Earlier answers' images, for a text model: each becomes ``[image: <description>]``, the description read
    from the signature of the thought step before it (which the image's drawing sealed there)."""
    out: list[Step] = []
    description = ""
    for step in history:
        if isinstance(step, ThoughtStep):
            description = thought_text(step)
        if isinstance(step, ModelOutputStep) and any(c.type == "image" for c in step.content or []):
            content = [
                c if c.type != "image" else TextContent(text=f"[image: {description or 'an image'}]\n\n")
                for c in step.content or []
            ]
            step = step.model_copy(update={"content": content})
        out.append(step)
    return out


def paired_backend(
    name: str, options: dict[str, Any], served: Mapping[str, Backend], images: ImageBackends
) -> InterleavedBackend:
    """A ``[models]`` entry with ``backend = "interleaved"``: ``text`` names a served model, ``images`` an
    ``[images]`` backend."""
    try:
        parsed = PairOptions.model_validate(options)
    except ValidationError as exc:
        raise ValueError(f"model {name!r}: interleaved options: {exc}") from exc
    text = served.get(parsed.text)
    if text is None:
        known = ", ".join(sorted(served)) or "none"
        raise ValueError(f"model {name!r}: text {parsed.text!r} is not a served model (served: {known})")
    drawer = images.get(parsed.images)
    if drawer is None:
        known = ", ".join(sorted(images.names())) or "none: add an [images.<name>] section"
        raise ValueError(f"model {name!r}: images {parsed.images!r} is not an [images] backend ({known})")
    return InterleavedBackend(text, drawer, parsed.max_images)
