"""The scripted backend: a deterministic test double for protocol tests, demos and benchmarks.

It plays events from rules in a script file (JSON or TOML), or from a script sent as the input text when
``inline`` is on. It is never a default, ``GET /models`` marks it as a test double, and it stands in for no
feature: it plays the model only; a server tool it calls really runs.

Its tokenizer counts whitespace-separated words. ``max_output_tokens`` truncates at that count (status
``incomplete``); ``stop_sequences`` cut a text chunk at the first sequence it contains. Sampling settings
(temperature, top_p, seed, thinking_level) change nothing: a script is deterministic by construction.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..schema.base import WireModel
from ..schema.steps import ThoughtStep, UserInputStep
from ..tools.registry import SERVER_TOOLS
from .base import (
    REASONING_AND_TOOL_CONFIG,
    SAMPLING_CONFIG,
    BackendError,
    CallArguments,
    CallStart,
    Capabilities,
    Finish,
    ForeignEvent,
    GenerationRequest,
    ModelEvent,
    Resume,
    StepBreak,
    TextChunk,
    ThoughtChunk,
    UsageReport,
)


class When(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_contains: str | None = None
    input_equals: str | None = None
    last_step: str | None = None
    tool: str | None = None
    turn: int | None = None
    system_contains: str | None = None
    round: int | None = None  # the model round of the tool loop (0: the first)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: When = Field(default_factory=When)
    events: list[dict[str, Any]]


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)


class ScriptedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    script: Path | None = None
    # Play a script sent as the input text: {"script": [...]} or, for server-tool rounds, {"rounds": [[...], ...]}.
    inline: bool = False
    record: Path | None = None  # append every request the backend receives, as JSON lines
    # Continue a round cut off by a crash (Capabilities.continuation); off, it plays a backend that cannot.
    continuation: bool = True


def load_script(path: Path) -> Script:
    raw = path.read_bytes()
    data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    return Script.model_validate(data)


def _user_text(request: GenerationRequest) -> str:
    """The text of this interaction's own input, not an earlier turn's."""
    turn = request.history[request.turn_start :]
    return "".join(c.text for s in turn if isinstance(s, UserInputStep) for c in s.content or [] if c.type == "text")


def _last_result(request: GenerationRequest) -> str:
    for step in reversed(request.history):
        if step.type.endswith("_result") and SERVER_TOOLS.of_step(step.type) is not None:
            result = step.result  # type: ignore[union-attr]
            if isinstance(result, str):
                return result.strip()
            items: Any = result if isinstance(result, list) else [result]
            return " ".join(_item_text(item.wire() if isinstance(item, WireModel) else item) for item in items)
    return ""


def _item_text(item: Any) -> str:
    """A result item's text (a page's, a search hit's snippet); an item with neither, as JSON."""
    if not isinstance(item, dict):
        return str(item)
    if "text" in item or "snippet" in item:
        return str(item.get("text") or item.get("snippet") or "")
    return json.dumps(item, ensure_ascii=False)


def _round(request: GenerationRequest) -> int:
    """Which model round of the tool loop this is (0: the first)."""
    return request.round


def _words(text: str) -> int:
    return len(text.split())


def _history_words(request: GenerationRequest) -> int:
    count = _words(request.system_instruction or "")
    for step in request.history:
        count += _words(json.dumps(step.wire()))
    return count


class ScriptedBackend:
    def __init__(self, options: ScriptedOptions) -> None:
        self.capabilities = Capabilities(
            generation_config=SAMPLING_CONFIG | REASONING_AND_TOOL_CONFIG,
            function_calling=True,
            test_double=True,
            continuation=options.continuation,
        )
        self._options = options
        self._script = load_script(options.script) if options.script else Script()

    def use(self, script: Script) -> None:
        """Play ``script`` from the next request on (the test kit's scripts, openinteractions.testing)."""
        self._script = script

    async def aclose(self) -> None:
        return None

    def prepare(self, request: GenerationRequest) -> None:
        return None

    def _matches(self, when: When, request: GenerationRequest) -> bool:
        text = _user_text(request)
        tools = {f.name for f in request.functions} | set(request.server_tools)
        checks = [
            when.input_contains is None or when.input_contains.lower() in text.lower(),
            when.input_equals is None or when.input_equals == text,
            when.last_step is None or (bool(request.history) and request.history[-1].type == when.last_step),
            when.tool is None or when.tool in tools,
            when.turn is None or when.turn == sum(isinstance(s, UserInputStep) for s in request.history),
            when.system_contains is None or when.system_contains in (request.system_instruction or ""),
            when.round is None or when.round == _round(request),
        ]
        return all(checks)

    def _events_for(self, request: GenerationRequest) -> list[dict[str, Any]]:
        if self._options.inline:
            try:  # the script is a JSON object at the start of the input; text may follow it
                data, _ = json.JSONDecoder().raw_decode(_user_text(request).lstrip())
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("rounds"), list):
                rounds = data["rounds"]
                return rounds[_round(request)] if _round(request) < len(rounds) else []
            if isinstance(data, dict) and isinstance(data.get("script"), list):
                return data["script"] if _round(request) == 0 else []
        for rule in self._script.rules:
            if self._matches(rule.when, request):
                return rule.events
        raise BackendError("no rule of the script matches this request", "failed_precondition")

    def _record(self, request: GenerationRequest) -> None:
        if self._options.record is None:
            return
        entry = {
            "model": request.model,
            "system_instruction": request.system_instruction,
            "history": [step.wire() for step in request.history],
            "thoughts": [request.thought_text(s) for s in request.history if isinstance(s, ThoughtStep)],
            "functions": [f.wire() for f in request.functions],
            "server_tools": list(request.server_tools),
            "config": request.config.wire(),
        }
        with open(self._options.record, "a") as f:
            f.write(json.dumps(entry) + "\n")

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[ModelEvent, None]:
        self._record(request)
        played = _Player(request).events(self._events_for(request))
        if request.resume is not None:
            played = _rest(played, request.resume, frozenset(request.server_tools))
        for item in played:
            if type(item) is _Pause:
                await item.wait()
            else:
                yield item  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float | None  # None: until cancelled

    async def wait(self) -> None:
        if self.seconds is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.seconds or 0)


class _Player:
    """Turns script entries into model events, applying the request's output limits."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.budget = request.config.max_output_tokens
        self.stops = [s for s in request.config.stop_sequences or [] if s]
        self.out_words = 0
        self.thought_words = 0
        self.reported: UsageReport | None = None
        choice = request.config.tool_choice
        mode = choice if isinstance(choice, str) or choice is None else choice.allowed_tools.mode
        self.calls_allowed = mode != "none"

    def usage(self) -> UsageReport:
        return self.reported or UsageReport(
            input_tokens=_history_words(self.request), output_tokens=self.out_words, thought_tokens=self.thought_words
        )

    def events(self, specs: list[dict[str, Any]]) -> Iterator[ModelEvent | _Pause]:
        for spec in specs:
            for event in self.expand(spec):
                yield event
                if isinstance(event, Finish):
                    return
        yield self.usage()
        yield Finish("stop")

    def expand(self, spec: dict[str, Any]) -> Iterator[ModelEvent | _Pause]:
        if "repeat" in spec:
            for _ in range(int(spec["repeat"])):
                for inner in spec.get("events", []):
                    yield from self.expand(inner)
            return
        if len(spec) != 1:
            raise BackendError(f"a script event has exactly one key, got {sorted(spec)}", "invalid_script")
        key, value = next(iter(spec.items()))
        if key == "text":
            yield from self._text(str(value))
        elif key == "thought":
            self.thought_words += _words(str(value))
            yield ThoughtChunk(str(value))
        elif key == "break":
            yield StepBreak()
        elif key == "call":
            if self.calls_allowed:
                yield from _call(value)
        elif key == "text_from_result":
            # plays a model that read the last server-tool result: "{result}" becomes that result's text
            yield from self._text(str(value).replace("{result}", _last_result(self.request)))
        elif key == "future_event":
            yield ForeignEvent(dict(value))
        elif key == "usage":
            self.reported = UsageReport(**value)
        elif key == "finish":
            yield self.usage()
            yield Finish(value)
        elif key == "error":
            raise BackendError(value.get("message", "scripted error"), value.get("code", "internal"))
        elif key == "sleep_ms":
            yield _Pause(float(value) / 1000)
        elif key == "hang":
            yield _Pause(None)
        else:
            raise BackendError(f"unknown script event {key!r}", "invalid_script")

    def _text(self, text: str) -> list[ModelEvent]:
        for stop in self.stops:
            if stop in text:
                return [TextChunk(text[: text.index(stop)]), self.usage(), Finish("stop")]
        words = _words(text)
        if self.budget is not None and self.out_words + words > self.budget:
            kept = " ".join(text.split(" ")[: max(self.budget - self.out_words, 0)])
            self.out_words = self.budget
            return [TextChunk(kept), self.usage(), Finish("max_tokens")]
        self.out_words += words
        return [TextChunk(text)]


def _rest(played: Iterator[ModelEvent | _Pause], resume: Resume, server_tools: frozenset[str]) -> Iterator[Any]:
    """Deterministic continuation: the round's events less what the cut-off round had produced (its completed
    steps, and the open step's text so far), so that the run ends as it would have without the crash. The pauses
    before an event already logged are not waited again: that time was spent before the crash, and a run killed
    more often than its script is long would otherwise never end."""
    pauses: list[_Pause] = []
    for event, logged in _marked(played, resume, server_tools):
        if type(event) is _Pause and event.seconds is not None:
            pauses.append(event)
        elif logged:
            pauses.clear()
        else:
            yield from pauses
            pauses.clear()
            yield event
    yield from pauses


def _marked(
    played: Iterator[ModelEvent | _Pause], resume: Resume, server_tools: frozenset[str]
) -> Iterator[tuple[Any, bool]]:
    """The round's events, each with whether the log has it already."""
    done, skip = len(resume.steps), len(resume.prefill)
    step, kind = -1, None  # the step (as the step writer counts them) the played events are in
    server_call = False  # a server tool's call: held by the tool loop, never logged, so played again
    for event in played:
        if isinstance(event, CallStart):
            server_call = event.name in server_tools
            if server_call:
                kind = None  # it closes the open step
                yield event, False
                continue
            step, kind = step + 1, "call"
        elif isinstance(event, CallArguments):
            if server_call:
                yield event, False
                continue
        elif isinstance(event, (TextChunk, ThoughtChunk)):
            server_call = False
            wanted = "model_output" if isinstance(event, TextChunk) else "thought"
            if kind != wanted:
                step, kind = step + 1, wanted
        elif isinstance(event, StepBreak):
            server_call, kind = False, None
        if step < done and isinstance(event, (TextChunk, ThoughtChunk, CallStart, CallArguments, StepBreak)):
            yield event, True
            continue
        if step == done and skip and isinstance(event, (TextChunk, ThoughtChunk)):
            cut = min(skip, len(event.text))
            skip -= cut
            if cut == len(event.text):
                yield event, True
                continue
            event = type(event)(event.text[cut:])
        yield event, False


def _call(value: dict[str, Any]) -> list[ModelEvent]:
    events: list[ModelEvent] = [CallStart(name=value["name"], id=value.get("id"))]
    if "fragments" in value:
        return events + [CallArguments(f) for f in value["fragments"]]
    text = json.dumps(value.get("arguments", {}))
    chunks = max(int(value.get("chunks", 1)), 1)
    size = -(-len(text) // chunks)
    return events + [CallArguments(text[i : i + size]) for i in range(0, len(text), size)]


def create(options: dict[str, Any], base_dir: Path) -> ScriptedBackend:
    try:
        parsed = ScriptedOptions.model_validate(options)
    except ValidationError as exc:
        raise ValueError(f"scripted backend options: {exc}") from exc
    for name in ("script", "record"):
        path = getattr(parsed, name)
        if path is not None and not path.is_absolute():
            setattr(parsed, name, base_dir / path)
    return ScriptedBackend(parsed)
