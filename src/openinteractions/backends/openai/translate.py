"""Chat-completion stream chunks → model events. Pure: no I/O, no clock; one translator per upstream answer.

Lenient with what upstreams send:

- text from ``delta.content`` (a string, or a list of parts as some servers send) and ``delta.refusal``;
- reasoning from ``delta.reasoning_content`` (vLLM before 0.10, SGLang, DeepSeek, llama.cpp server) or
  ``delta.reasoning`` (newer vLLM, Ollama, OpenRouter); a server that sends both with the same text is read once;
  ``<think>…</think>`` inside the content, even with a tag split across chunks;
- ``tool_calls`` accumulated by ``index`` (only the first chunk of a call has its id and name; some servers repeat
  them, some send explicit nulls, Ollama sends whole calls in one chunk and older Ollama no index at all), empty
  ``""`` fragments, arguments that arrive whole, several calls interleaved by index, the legacy ``function_call``;
- ``finish_reason`` anywhere or nowhere, usage on any chunk (the last one wins: vLLM's continuous usage is
  cumulative), chunks with empty ``choices``, unknown fields.

Strict with what it emits: one step is open at a time downstream, so each call's ``CallStart`` and fragments are
contiguous. The first call streams as it arrives; fragments of other calls wait until the current call's
arguments form a complete JSON value (then nothing more can follow them) or until the stream ends. Text that
arrives while a call is still incomplete waits until the calls end; whitespace between or after calls (template
formatting) is dropped. Text right after a thought loses its leading whitespace (the blank lines that follow
``</think>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ..base import BackendError, CallArguments, CallStart, Finish, ModelEvent, TextChunk, ThoughtChunk, UsageReport

ThinkMode = Literal["parse", "starts_open", "off"]
_decode = json.JSONDecoder().raw_decode  # about twice as fast as json.loads on bytes


class StreamFailure(Exception):
    """The upstream reported an error inside the stream; ``payload`` is what it sent."""

    def __init__(self, payload: Any) -> None:
        super().__init__("upstream error in stream")
        self.payload = payload


class TruncatedStream(Exception):
    """The stream ended with neither ``[DONE]`` nor a ``finish_reason``: the upstream went away mid-answer."""


@dataclass
class _Call:
    id: str | None = None
    name: str = ""
    args: list[str] = field(default_factory=list)
    closed: bool = False

    def complete(self) -> bool:
        if not self.args:
            return False
        try:
            json.loads("".join(self.args))
        except ValueError:
            return False
        return True


class ThinkTags:
    """Splits text at ``<think>`` / ``</think>``, holding back a tag's beginning until the next chunk shows it."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self, starts_open: bool = False) -> None:
        self.thinking = starts_open
        self.held = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """(is_thought, text) pieces."""
        if not self.held and "<" not in text:  # the common case: no tag, and no tag's beginning
            return [(self.thinking, text)]
        buffer, self.held = self.held + text, ""
        out: list[tuple[bool, str]] = []
        while buffer:
            tag = self.CLOSE if self.thinking else self.OPEN
            at = buffer.find(tag)
            if at >= 0:
                if at:
                    out.append((self.thinking, buffer[:at]))
                self.thinking = not self.thinking
                buffer = buffer[at + len(tag) :]
                continue
            partial = next((k for k in range(len(tag) - 1, 0, -1) if buffer.endswith(tag[:k])), 0)
            if len(buffer) > partial:
                out.append((self.thinking, buffer[: len(buffer) - partial]))
            self.held = buffer[len(buffer) - partial :]
            break
        return out

    def flush(self) -> list[tuple[bool, str]]:
        held, self.held = self.held, ""
        return [(self.thinking, held)] if held else []


class StreamTranslator:
    def __init__(self, think_tags: ThinkMode = "parse", thoughts: bool = True) -> None:
        """``thoughts=False``: reasoning is left out, and the text after it keeps its leading whitespace (it
        continues an answer cut off by a crash)."""
        self._think = ThinkTags(think_tags == "starts_open") if think_tags != "off" else None
        self._thoughts = thoughts
        self._calls: dict[tuple[str, Any], _Call] = {}
        self._current: _Call | None = None
        self._queue: list[_Call] = []  # calls seen but not started, in order of arrival
        self._held: list[ModelEvent] = []  # text and thoughts that arrived while a call was incomplete
        self._after_thought = False
        self._usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    # ---- input -------------------------------------------------------------------------------------

    def message(self, event: str, data: bytes) -> list[ModelEvent]:
        """One SSE message other than ``[DONE]``. Data that is not JSON is skipped, unless it is an error."""
        try:
            text = data.decode()
            payload: Any = _decode(text.lstrip() if text[:1].isspace() else text)[0]
        except ValueError:
            if event == "error":
                raise StreamFailure({"message": data.decode("utf-8", "replace")}) from None
            return []
        if event == "error":
            raise StreamFailure(payload)
        return self.feed(payload)

    def messages(self, messages: list[tuple[str, bytes]], out: list[ModelEvent]) -> None:
        """Several SSE messages (none of them ``[DONE]``), as ``message`` would take them one by one; their
        events go to ``out`` as they come, so that those before a failure are kept. Plain JSON data lines, the
        usual case, are parsed with one call (as one array) instead of one each."""
        payloads = _parse_together(messages)
        if payloads is None:
            for name, data in messages:
                out += self.message(name, data)
        else:
            self._feed_many(payloads, out)

    def _feed_many(self, payloads: list[Any], out: list[ModelEvent]) -> None:
        """``feed`` for each payload, with runs of chunks that carry nothing but text (the bulk of a stream)
        taken in one pass and joined into one event, as ``coalesce`` would join them."""
        texts: list[str] = []
        plain = self._plain()
        tags = self._think is not None
        for payload in payloads:
            text = _only_text(payload) if plain else None
            if text is not None and not (tags and "<" in text):
                if text:
                    texts.append(text)
                continue
            if texts:
                out.append(TextChunk("".join(texts)))
                texts = []
            out += self.feed(payload)
            plain = self._plain()
        if texts:
            out.append(TextChunk("".join(texts)))

    def _plain(self) -> bool:
        """Whether text would go out as it is: no call open or queued, no thought just ended, no tag pending."""
        think = self._think
        return (
            self._current is None
            and not self._queue
            and not self._held
            and not self._after_thought
            and (think is None or not (think.thinking or think.held))
        )

    def feed(self, chunk: Any) -> list[ModelEvent]:
        """One parsed ``data:`` payload."""
        out: list[ModelEvent] = []
        if not isinstance(chunk, dict):
            return out
        if chunk.get("error") or chunk.get("object") == "error":  # wrapped (OpenAI, newer vLLM) or bare
            raise StreamFailure(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return out
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index") not in (0, None):
                continue  # n > 1 is never requested; other choices are not ours
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
        return out

    def _delta(self, delta: dict[str, Any], out: list[ModelEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and type(reasoning) is str:
            self._emit(True, reasoning, out)
        content = delta.get("content")
        if content:
            if type(content) is str:
                self._content(content, out)
            elif type(content) is list:
                self._parts(content, out)
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            self._content(refusal, out)
        calls = delta.get("tool_calls")
        if calls and type(calls) is list:
            for position, item in enumerate(calls):
                if type(item) is dict:
                    self._tool_delta(_call_key(item, position), item, out)
        elif "function_call" in delta and type(delta["function_call"]) is dict:  # the legacy single-call form
            self._tool_delta(("legacy", 0), {"function": delta["function_call"]}, out)

    def _parts(self, parts: list[Any], out: list[ModelEvent]) -> None:
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                self._content(part["text"], out)
            elif part.get("type") == "thinking":
                thinking = part.get("thinking")
                if isinstance(thinking, list):
                    thinking = "".join(p.get("text", "") for p in thinking if isinstance(p, dict))
                if isinstance(thinking, str):
                    self._emit(True, thinking, out)

    def _content(self, text: str, out: list[ModelEvent]) -> None:
        if self._think is None:
            self._emit(False, text, out)
            return
        for is_thought, piece in self._think.feed(text):
            self._emit(is_thought, piece, out)

    def _emit(self, is_thought: bool, text: str, out: list[ModelEvent]) -> None:
        if not text:
            return
        if is_thought:
            if not self._thoughts:
                return
            if not self._after_thought:
                text = text.lstrip()  # the newline after <think>
                if not text:
                    return
            self._after_thought = True
            event: ModelEvent = ThoughtChunk(text)
        else:
            if self._after_thought:
                text = text.lstrip()  # the blank lines after </think>
                if not text:
                    return
            self._after_thought = False
            event = TextChunk(text)
        if self._current is not None or self._queue:
            if isinstance(event, TextChunk) and not text.strip():
                return  # formatting between or after calls
            if self._current is not None and not self._queue and self._current.complete():
                self._close_current(out)
            else:
                self._held.append(event)
                return
        out.append(event)

    # ---- function calls ----------------------------------------------------------------------------

    def _tool_delta(self, key: tuple[str, Any], item: dict[str, Any], out: list[ModelEvent]) -> None:
        function = item.get("function")
        function = function if isinstance(function, dict) else {}
        fragment = function.get("arguments")
        if isinstance(fragment, dict | list):
            fragment = json.dumps(fragment, ensure_ascii=False)
        if not isinstance(fragment, str):
            fragment = ""
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call()
            self._queue.append(call)
        if call.closed:
            if fragment.strip():
                raise BackendError(
                    f"the upstream sent more arguments for {call.name!r} after they formed a complete JSON value",
                    "invalid_function_call",
                )
            return
        call_id, name = item.get("id"), function.get("name")
        if isinstance(call_id, str) and call_id and call.id is None:
            call.id = call_id
        if isinstance(name, str) and name and not call.name:
            call.name = name
        if fragment:
            call.args.append(fragment)
            if call is self._current:
                out.append(CallArguments(fragment))
        if self._current is not None and call is not self._current and self._current.complete():
            self._close_current(out)
        self._start_queued(out)

    def _start_queued(self, out: list[ModelEvent]) -> None:
        while self._current is None and self._queue and self._queue[0].name:
            call = self._queue.pop(0)
            out.append(CallStart(name=call.name, id=call.id))
            if call.args:
                out.append(CallArguments("".join(call.args)))
            self._current = call
            if self._queue and call.complete():
                self._close_current(out)

    def _close_current(self, out: list[ModelEvent]) -> None:
        if self._current is not None:
            self._current.closed = True
            self._current = None
        if not self._queue and self._held:
            out.extend(self._held)
            self._held = []

    # ---- the end -----------------------------------------------------------------------------------

    def finish(self, done: bool = True) -> list[ModelEvent]:
        """The stream ended: flush, usage, finish. ``done``: it ended with ``[DONE]``; without it, only a
        ``finish_reason`` seen earlier makes the answer complete (some servers omit ``[DONE]``)."""
        if not done and self.finish_reason is None:
            raise TruncatedStream()
        out: list[ModelEvent] = []
        if self._think is not None:
            for is_thought, piece in self._think.flush():
                self._emit(is_thought, piece, out)
        open_calls = [c for c in ([self._current] if self._current else []) + self._queue]
        if self.finish_reason == "length" and any(not c.complete() for c in open_calls):
            raise BackendError("max_output_tokens ended the output inside a function call", "resource_exhausted")
        for call in self._queue:
            if not call.name:
                raise BackendError("the upstream sent a tool call without a function name", "invalid_function_call")
        self._current = None
        while self._queue:
            call = self._queue.pop(0)
            out.append(CallStart(name=call.name, id=call.id))
            if call.args:
                out.append(CallArguments("".join(call.args)))
        out.extend(self._held)
        self._held = []
        if self.finish_reason in ("abort", "error"):
            raise BackendError(f"the upstream ended the answer with finish_reason {self.finish_reason!r}", "aborted")
        if self._usage is not None:
            out.append(usage_report(self._usage))
        # "content_filter" cut the output short: incomplete, like a length limit.
        out.append(Finish("max_tokens" if self.finish_reason in ("length", "content_filter") else "stop"))
        return out


def _only_text(chunk: Any) -> str | None:
    """The text of a chunk whose only content is text for choice 0 (no usage, finish, error, reasoning or
    call), else None: such a chunk changes nothing but the text."""
    if type(chunk) is not dict or chunk.get("usage") is not None or "error" in chunk or chunk.get("object") == "error":
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") or choice.get("index") not in (0, None):
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    text = delta.get("content")
    if type(text) is not str:
        return None
    if len(delta) > 1:
        for key, value in delta.items():
            if value is not None and key != "content" and key != "role":
                return None
    return text


def _parse_together(messages: list[tuple[str, bytes]]) -> list[Any] | None:
    """The JSON payloads of the messages, or None unless each is one plain JSON value that orjson reads (what
    it refuses, such as NaN or a lone surrogate, goes one by one through the lenient ``json``)."""
    if not messages:
        return None
    parts = []
    for name, data in messages:  # a plain loop: this runs once per read, for every message
        if name != "message":
            return None
        parts.append(data)
    try:
        payloads = orjson.loads(b"[" + b",".join(parts) + b"]")
    except ValueError:
        return None
    return payloads if len(payloads) == len(messages) else None  # a data line with two values: one by one


def coalesce(events: list[ModelEvent]) -> list[ModelEvent]:
    """Adjacent text, thought or argument pieces joined into one event each: what one read brought goes
    downstream as one delta. The text is the same and nothing waits for more; a token that arrives alone still
    goes out alone, while a burst (a fast upstream, or a loop busy with other streams) costs one event."""
    if len(events) < 2:
        return events
    out: list[ModelEvent] = []
    pieces: list[str] = []
    for event in events:
        kind = type(event)
        if pieces and kind is type(out[-1]):
            pieces.append(_piece(event))
            continue
        if len(pieces) > 1:
            out[-1] = _joined(out[-1], pieces)
        pieces = [_piece(event)] if kind in _MERGEABLE else []
        out.append(event)
    if len(pieces) > 1:
        out[-1] = _joined(out[-1], pieces)
    return out


_MERGEABLE = (TextChunk, ThoughtChunk, CallArguments)


def _piece(event: ModelEvent) -> str:
    return event.fragment if isinstance(event, CallArguments) else event.text  # type: ignore[union-attr]


def _joined(first: ModelEvent, pieces: list[str]) -> ModelEvent:
    return type(first)("".join(pieces))  # type: ignore[call-arg, arg-type]  # first is one of _MERGEABLE


def _call_key(item: dict[str, Any], position: int) -> tuple[str, Any]:
    index = item.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        return ("index", index)
    call_id = item.get("id")
    if isinstance(call_id, str) and call_id:
        return ("id", call_id)
    return ("index", position)  # older Ollama: no index; the position in the list stands in for it


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def usage_report(usage: dict[str, Any]) -> UsageReport:
    """OpenAI's completion_tokens include reasoning tokens; ours count them apart."""
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    reasoning = _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else 0
    cached = _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0
    completion = _count(usage.get("completion_tokens"))
    return UsageReport(
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=max(completion - reasoning, 0),
        thought_tokens=min(reasoning, completion) if completion else reasoning,
        cached_tokens=cached,
    )
