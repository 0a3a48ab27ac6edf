"""``metadata_filter``: a subset of AIP-160 (google.aip.dev/160) over a document's ``custom_metadata``.

``genre = "fiction" AND (year >= 1950 OR NOT draft = "yes")``: comparisons ``=``, ``!=``, ``<``, ``<=``, ``>``,
``>=`` and ``:`` (has), joined by ``AND``, ``OR``, ``NOT`` (or ``-``) and parentheses; AND binds tighter than OR.
A value is a quoted string, a number or a bare word. A string-list value matches ``=`` and ``:`` if any of its
items does; a numeric value compares as a number; a key a document lacks matches only ``!=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Metadata = dict[str, Any]  # key -> str | float | list[str]
Predicate = Callable[[Metadata], bool]

_TOKEN = re.compile(r'\s*(?:(\(|\))|(<=|>=|!=|=|<|>|:)|"((?:[^"\\]|\\.)*)"|([^\s()<>=!:"]+))')


class FilterError(ValueError):
    pass


def metadata_dict(custom_metadata: list[dict[str, Any]]) -> Metadata:
    """A document's ``customMetadata`` entries as key -> value."""
    values: Metadata = {}
    for entry in custom_metadata:
        if "stringListValue" in entry:
            values[entry["key"]] = list((entry["stringListValue"] or {}).get("values") or [])
        elif "numericValue" in entry:
            values[entry["key"]] = float(entry["numericValue"])
        else:
            values[entry["key"]] = str(entry.get("stringValue", ""))
    return values


def parse(expression: str) -> Predicate:
    tokens = _tokens(expression)
    parser = _Parser(tokens)
    predicate = parser.disjunction()
    if parser.position != len(tokens):
        raise FilterError(f"unexpected {tokens[parser.position][1]!r} in metadata_filter")
    return predicate


def _tokens(expression: str) -> list[tuple[str, str]]:
    """(kind, text): kind is "paren", "op", "string" or "word"."""
    tokens: list[tuple[str, str]] = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise FilterError(f"cannot read metadata_filter at {expression[position : position + 20]!r}")
        paren, op, string, word = match.groups()
        if paren:
            tokens.append(("paren", paren))
        elif op:
            tokens.append(("op", op))
        elif string is not None:
            tokens.append(("string", re.sub(r"\\(.)", r"\1", string)))
        else:
            tokens.append(("word", word))
        position = match.end()
    if not tokens:
        raise FilterError("metadata_filter is empty")
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise FilterError("metadata_filter ends too early")
        self.position += 1
        return token

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self._peek() == ("word", "OR"):
            self.position += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda m: any(p(m) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.negation()]
        while (token := self._peek()) is not None and token != ("word", "OR") and token != ("paren", ")"):
            if token == ("word", "AND"):
                self.position += 1
            parts.append(self.negation())  # AIP-160: a space between terms is AND
        return parts[0] if len(parts) == 1 else (lambda m: all(p(m) for p in parts))

    def negation(self) -> Predicate:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1].startswith("-"):
            if token[1] == "-":
                self.position += 1
            else:
                self.tokens[self.position] = ("word", token[1][1:])  # -key = value
            inner = self.negation()
            return lambda m: not inner(m)
        if token == ("word", "NOT"):
            self.position += 1
            inner = self.negation()
            return lambda m: not inner(m)
        if token == ("paren", "("):
            self.position += 1
            inner = self.disjunction()
            if self._take() != ("paren", ")"):
                raise FilterError("metadata_filter has an unclosed '('")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, key = self._take()
        if kind not in ("word", "string"):
            raise FilterError(f"expected a metadata key in metadata_filter, got {key!r}")
        kind, op = self._take()
        if kind != "op":
            raise FilterError(f"expected a comparison after {key!r} in metadata_filter, got {op!r}")
        kind, value = self._take()
        if kind not in ("word", "string"):
            raise FilterError(f"expected a value after '{key} {op}' in metadata_filter")
        return lambda m: _compare(m.get(key), op, value, quoted=kind == "string")


def _compare(actual: Any, op: str, value: str, quoted: bool) -> bool:
    if actual is None:
        return op == "!="
    if isinstance(actual, list):
        hit = any(_compare(item, "=", value, quoted) for item in actual)
        return not hit if op == "!=" else hit and op in ("=", ":")
    if isinstance(actual, float):
        try:
            number = float(value)
        except ValueError:
            return op == "!="
        return _ORDER[op if op != ":" else "="](actual, number)
    return _ORDER[op if op != ":" else "="](actual, value)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
