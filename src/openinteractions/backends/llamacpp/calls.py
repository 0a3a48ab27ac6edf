"""Function calls by constrained decoding: the grammar that makes every call well-formed, and the incremental
reader that turns the streamed JSON into call starts and argument fragments.

The model answers with a JSON array ``[{"name": ..., "arguments": {...}}, ...]``. The grammar, derived from
each function's ``parameters`` schema, only admits names that exist and arguments that validate, so every call
parses. Fragments are the exact characters of the ``arguments`` object, so they concatenate to it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ...schema.tools import FunctionTool
from ..base import CallArguments, CallStart, ModelEvent
from .schema_grammar import schema_to_gbnf

MAX_PARALLEL_CALLS = 4
DEFAULT_MAX_STRING = 256
DEFAULT_MAX_ITEMS = 16


def _bounded(schema: Any) -> Any:
    """Put a ceiling on open-ended strings and arrays so that a call always ends within the token budget."""
    if isinstance(schema, list):
        return [_bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _bounded(v) for k, v in schema.items()}
    kind = out.get("type")
    if kind == "string" and not {"enum", "const", "pattern", "maxLength"} & out.keys():
        out["maxLength"] = max(DEFAULT_MAX_STRING, out.get("minLength", 0))
    if kind == "array" and "maxItems" not in out:
        out["maxItems"] = max(DEFAULT_MAX_ITEMS, out.get("minItems", 0))
    return out


def _parameters(tool: FunctionTool) -> dict[str, Any]:
    params = copy.deepcopy(tool.parameters) if tool.parameters else {}
    params.setdefault("type", "object")
    if params.get("type") == "object":
        params.setdefault("properties", {})
    bounded: dict[str, Any] = _bounded(params)
    return bounded


def calls_schema(functions: list[FunctionTool]) -> dict[str, Any]:
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": f.name}, "arguments": _parameters(f)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    item = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}


def calls_grammar(functions: list[FunctionTool]) -> str:
    """GBNF for a JSON array of calls to ``functions``. Raises ValueError for what a grammar cannot enforce."""
    for tool in functions:
        try:
            schema_to_gbnf(_parameters(tool))
        except ValueError as exc:
            raise ValueError(f"function {tool.name!r}: {exc}") from exc
    return schema_to_gbnf(calls_schema(functions), prop_order=["name", "arguments"])


def answer_or_calls_grammar(calls: str) -> str:
    """Either the calls array or prose. Prose is told apart by its first visible character, after which the
    caller drops the grammar altogether (it would only slow plain text down)."""
    renamed = calls.replace("root ::=", "calls ::=", 1)
    return renamed + "\nroot ::= [ \\t\\n]* (calls | prose)\nprose ::= [^[ \\t\\n] [^\\x00]*\n"


def json_grammar(schema: dict[str, Any] | None) -> str:
    try:
        return schema_to_gbnf(_bounded(schema or {"type": "object"}))
    except ValueError as exc:
        raise ValueError(f"response_format.schema: {str(exc).removeprefix('parameters')}") from exc


class CallReader:
    """Reads ``[{"name": "...", "arguments": {...}}, ...]`` character by character as it is generated."""

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._string: list[str] = []
        self._key: str | None = None
        self._after_colon = False
        self._args_from: int | None = None  # depth of the arguments object while inside it

    @property
    def open(self) -> bool:
        """Whether the array of calls is still unfinished."""
        return self._depth > 0 or self._in_string

    def feed(self, text: str) -> list[ModelEvent]:
        events: list[ModelEvent] = []
        fragment: list[str] = []
        for ch in text:
            if self._args_from is not None:
                fragment.append(ch)
                self._track(ch)
                if self._depth < self._args_from:
                    self._args_from = None
                    events.append(CallArguments("".join(fragment)))
                    fragment = []
                continue
            event = self._outside_arguments(ch)
            if event is not None:
                events.append(event)
            if self._args_from is not None:
                fragment.append(ch)
        if fragment:
            events.append(CallArguments("".join(fragment)))
        return events

    def _track(self, ch: str) -> None:
        """String and depth bookkeeping, for characters inside the arguments object."""
        if self._in_string:
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self._in_string = False
        elif ch == '"':
            self._in_string = True
        elif ch in "{[":
            self._depth += 1
        elif ch in "}]":
            self._depth -= 1

    def _outside_arguments(self, ch: str) -> ModelEvent | None:
        if self._in_string:
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self._in_string = False
                return self._string_closed(json.loads('"' + "".join(self._string) + '"'))
            self._string.append(ch)
            return None
        if ch == '"':
            self._in_string, self._string = True, []
        elif ch == ":":
            self._after_colon = True
        elif ch == ",":
            self._after_colon = False
        elif ch in "{[":
            self._depth += 1
            if ch == "{" and self._depth == 3 and self._after_colon and self._key == "arguments":
                self._args_from = 3
        elif ch in "}]":
            self._depth -= 1
            self._after_colon = False
        return None

    def _string_closed(self, value: str) -> ModelEvent | None:
        if not self._after_colon:
            self._key = value
            return None
        if self._depth == 2 and self._key == "name":
            return CallStart(name=value)
        return None
