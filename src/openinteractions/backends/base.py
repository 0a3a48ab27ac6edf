"""The backend interface: a model that turns a conversation into a stream of model events.

Backends know nothing of steps, event ids or SSE. The engine turns their events into steps.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..schema.generation import GenerationConfig, ImageResponseFormat, TextResponseFormat
from ..schema.steps import ModelOutputStep, Step, ThoughtStep
from ..schema.tools import FunctionTool


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ThoughtChunk:
    """Reasoning text. The engine streams it as summary deltas when asked and seals it into the signature."""

    text: str


@dataclass(frozen=True, slots=True)
class StepBreak:
    """Ends the current step, so that the next chunk of the same kind opens a new one."""


@dataclass(frozen=True, slots=True)
class CallStart:
    name: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CallArguments:
    """A fragment of the JSON arguments of the call opened by the last ``CallStart``."""

    fragment: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A server-side tool call step (``google_search_call``...), emitted whole."""

    tool: str
    id: str
    arguments: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)  # of the step beside its arguments (search_type)


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool: str
    call_id: str
    result: Any
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ImageChunk:
    """A generated image in the model output: base64 ``data`` in ``mime_type``."""

    data: str
    mime_type: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    input_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    cached_tokens: int = 0
    tool_use_tokens: int = 0


@dataclass(frozen=True, slots=True)
class VisionUsageReport(UsageReport):
    """Usage of a prompt with images: ``image_input_tokens`` of its ``input_tokens`` are the images'."""

    image_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ImageUsageReport(UsageReport):
    """Usage of generated images: ``image_output_tokens`` of its ``output_tokens`` count images."""

    image_output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    reason: Literal["stop", "max_tokens"]


@dataclass(frozen=True, slots=True)
class ForeignEvent:
    """Test doubles only: an event of a type this server does not define, passed through to the stream."""

    payload: dict[str, Any]


ModelEvent = (
    ForeignEvent
    | TextChunk
    | ThoughtChunk
    | ImageChunk
    | StepBreak
    | CallStart
    | CallArguments
    | ToolCall
    | ToolResult
    | UsageReport
    | Finish
)


class BackendError(Exception):
    """A failure of the model. ``code`` is the slug that the stream's ``error`` event carries."""

    def __init__(self, message: str, code: str = "internal") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# generation_config fields a backend may declare it honours; the rest of a request's config is refused.
SAMPLING_CONFIG = frozenset({"temperature", "top_p", "seed", "max_output_tokens", "stop_sequences"})
REASONING_AND_TOOL_CONFIG = frozenset({"thinking_level", "thinking_summaries", "tool_choice"})


@dataclass(frozen=True)
class Capabilities:
    """What a backend implements; the engine rejects with a 400 every request field outside it."""

    generation_config: frozenset[str] = frozenset()
    input_modalities: frozenset[str] = frozenset({"text"})
    output_modalities: frozenset[str] = frozenset({"text"})
    function_calling: bool = False
    structured_output: bool = False
    test_double: bool = False
    # Can continue a round cut off by a crash: given ``GenerationRequest.resume``, it produces only what the
    # round had not produced yet (the open step's text is the start of its answer). Without it, the run
    # closes the cut step and starts the round again from everything produced so far.
    continuation: bool = False
    # With continuation, which points it continues: "all", or "text": only a cut model output whose round holds
    # nothing but thoughts and text so far (or nothing yet); at another point the run restarts the round.
    continuation_scope: Literal["all", "text"] = "all"


@dataclass
class Resume:
    """Where a round cut off by a crash stands: the steps it completed, and the text of the step it was in."""

    steps: list[Step]
    open_step: str | None  # model_output or thought, None between steps
    prefill: str  # that step's text so far (a thought's: its summary, if it was shown; else "")


def continues(capabilities: Capabilities, point: Resume) -> bool:
    """Whether a backend with these capabilities goes on from ``point``, or the round must restart."""
    if not capabilities.continuation or point.open_step not in (None, "model_output", "thought"):
        return False
    if capabilities.continuation_scope == "all":
        return True
    if point.open_step is None:
        return not point.steps
    return point.open_step == "model_output" and all(isinstance(s, ThoughtStep | ModelOutputStep) for s in point.steps)


@dataclass
class GenerationRequest:
    model: str
    history: list[Step]
    system_instruction: str | None = None
    functions: list[FunctionTool] = field(default_factory=list)
    server_tools: list[str] = field(default_factory=list)
    config: GenerationConfig = field(default_factory=GenerationConfig)
    response_format: TextResponseFormat | None = None
    image_format: ImageResponseFormat | None = None  # image output asked for (a model paired with images)
    thought_text: Callable[[ThoughtStep], str] = lambda step: ""
    plan: Any = None  # what the backend's prepare() decided, kept for generate()
    turn_start: int = 0  # where this interaction's own input begins in history
    round: int = 0  # which model round of the tool loop this is (0: the first)
    resume: Resume | None = None  # continue a round cut off by a crash (backends with ``continuation``)


class Backend(Protocol):
    capabilities: Capabilities

    def prepare(self, request: GenerationRequest) -> Any:
        """Checks that need the model (prompt length, grammars), before the interaction starts: a
        BackendError raised here becomes a 400. Whatever it returns is kept as ``request.plan``."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[ModelEvent, None]: ...

    async def aclose(self) -> None: ...
