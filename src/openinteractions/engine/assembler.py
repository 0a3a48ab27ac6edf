"""The one assembler: folds an interaction's events into its steps, status, usage and errors.

The stream, GET and non-stream create all show this fold of the same events, so they cannot disagree; the
one thing the fold leaves out is a function call cut off before its arguments were complete.
"""

from __future__ import annotations

import json
from typing import Any

from ..schema.events import (
    ChunkEvent,
    ErrorEvent,
    Event,
    InteractionCompletedEvent,
    InteractionCreatedEvent,
    InteractionStatusUpdateEvent,
    StepDeltaEvent,
    StepStartEvent,
)
from ..schema.steps import Step

_MEDIA = frozenset({"image", "audio", "video", "document"})
_MEDIA_FIELDS = {
    "image": ("data", "uri", "mime_type", "resolution"),
    "audio": ("data", "uri", "mime_type", "sample_rate", "channels"),
    "video": ("data", "uri", "mime_type", "resolution"),
    "document": ("data", "uri", "mime_type"),
}


class _Draft:
    """One step being built from its start and deltas."""

    __slots__ = ("args", "content", "fields", "summary")

    def __init__(self, step: Step) -> None:
        self.fields: dict[str, Any] = step.wire()
        self.content: list[dict[str, Any]] = []
        self.summary: list[dict[str, Any]] = []
        self.args: list[str] = []

    def chunk(self, kind: str, value: str) -> None:
        if kind == "text":
            self._text_block(self.content)["_parts"].append(value)
        elif kind == "arguments_delta":
            self.args.append(value)
        else:
            self._text_block(self.summary)["_parts"].append(value)

    def apply(self, delta: Any) -> None:
        kind = delta.type
        if kind == "text":
            self._text_block(self.content)["_parts"].append(delta.text)
        elif kind == "thought_summary":
            content = delta.content
            if content is not None and content.type == "text":
                self._text_block(self.summary)["_parts"].append(content.text)
            elif content is not None:
                self.summary.append(content.wire())
        elif kind == "arguments_delta":
            self.args.append(delta.arguments or "")
        elif kind == "thought_signature":
            self.fields["signature"] = delta.signature
        elif kind == "text_annotation_delta":
            self._text_block(self.content).setdefault("annotations", []).extend(
                a.wire() for a in delta.annotations or []
            )
        elif kind in _MEDIA:
            wire = delta.wire()
            self.content.append({"type": kind, **{k: wire[k] for k in _MEDIA_FIELDS[kind] if k in wire}})
        else:  # tool call / result deltas carry the step's own fields
            self.fields.update({k: v for k, v in delta.wire().items() if k != "type"})

    @staticmethod
    def _text_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
        if blocks and blocks[-1]["type"] == "text":
            return blocks[-1]
        block: dict[str, Any] = {"type": "text", "_parts": []}
        blocks.append(block)
        return block

    def build(self) -> dict[str, Any] | None:
        """The finished step; None for a function call whose arguments were cut off (by a cancel, a failure or
        the token limit): showing it with made-up arguments would invite a client to run it, and answer it."""
        out = dict(self.fields)
        if self.content:
            out["content"] = [_finish_block(b) for b in self.content]
        if self.summary:
            out["summary"] = [_finish_block(b) for b in self.summary]
        if out["type"] == "function_call" and self.args:
            arguments = _arguments("".join(self.args))
            if arguments is None:
                return None
            out["arguments"] = arguments
        return out


def _arguments(text: str) -> dict[str, Any] | None:
    """What the step writer accepts as a call's arguments (blank is none); None for anything else."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _finish_block(block: dict[str, Any]) -> dict[str, Any]:
    if "_parts" not in block:
        return block
    out: dict[str, Any] = {"type": "text", "text": "".join(block["_parts"])}
    if "annotations" in block:
        out["annotations"] = block["annotations"]
    return out


class Assembler:
    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.errors: list[dict[str, str]] = []
        self._drafts: list[_Draft] = []

    @property
    def status(self) -> str | None:
        return self.summary.get("status")

    def apply(self, event: Event | ChunkEvent) -> None:
        # Exact type checks, not isinstance: this runs for every event of every run.
        if type(event) is ChunkEvent:
            self._drafts[event.index].chunk(event.kind, event.value)
        elif type(event) is StepDeltaEvent:
            self._drafts[event.index].apply(event.delta)
        elif type(event) is StepStartEvent:
            if event.index != len(self._drafts):
                raise ValueError(f"step.start index {event.index}, expected {len(self._drafts)}")
            self._drafts.append(_Draft(event.step))
        elif type(event) is InteractionCreatedEvent or type(event) is InteractionCompletedEvent:
            self.summary.update(event.interaction.wire())
        elif type(event) is InteractionStatusUpdateEvent:
            self.summary["status"] = event.status
        elif type(event) is ErrorEvent:
            self.summary["status"] = "failed"
            self.errors.append(event.error.wire())

    @property
    def drafts(self) -> list[_Draft]:
        return self._drafts

    def count(self, step_type: str) -> int:
        return sum(draft.fields["type"] == step_type for draft in self._drafts)

    def steps(self) -> list[dict[str, Any]]:
        return [step for step in map(_Draft.build, self._drafts) if step is not None]
