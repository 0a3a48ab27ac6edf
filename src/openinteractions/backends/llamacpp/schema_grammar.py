"""JSON schemas as decoding grammars, for exactly the constraints a grammar can enforce.

llama-cpp-python's converter handles structure, enums, string lengths and patterns, but silently ignores
numeric bounds (``minimum``, ``maximum`` and their exclusive forms). Function schemas written for Gemini use
them often, so they are added here as digit grammars; every other keyword that no grammar can enforce makes
the request a 400 instead of producing calls that do not validate.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, SchemaConverter

MAX_DIGITS = 16
# llama.cpp refuses a repetition with a lower bound above this ("exceeds sane defaults").
MAX_MIN_LENGTH = 2000
FRACTION = '("." [0-9]{1,6})?'
# Keywords that only describe; validation ignores them, so decoding may too.
ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "default",
        "examples",
        "example",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
        "propertyOrdering",
        "format",
    }
)
ENFORCED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


class UnsupportedSchema(ValueError):
    pass


def check_supported(schema: Any, path: str = "parameters") -> None:
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            check_supported(item, f"{path}[{i}]")
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key not in ENFORCED and key not in ANNOTATIONS:
            raise UnsupportedSchema(f"{path}: the keyword {key!r} cannot be enforced while decoding")
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                check_supported(sub, f"{path}.{key}.{name}")
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "additionalProperties"):
            check_supported(value, f"{path}.{key}")
    if schema.get("type") in ("integer", "number") and any(k in schema for k in _BOUNDS):
        _integer_bounds(schema)  # raises when nothing is left


def schema_to_gbnf(schema: dict[str, Any], prop_order: list[str] | None = None) -> str:
    """GBNF for ``schema``; raises UnsupportedSchema for what cannot be enforced."""
    check_supported(schema)
    converter = _BoundedConverter(
        prop_order={name: i for i, name in enumerate(prop_order or [])},
        allow_fetch=False,
        dotall=False,
        raw_pattern=False,
    )
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "request")
        converter.visit(resolved, "")
        return _json_strings_only(str(converter.format_grammar()))
    except UnsupportedSchema:
        raise
    except Exception as exc:  # the converter asserts and raises KeyErrors on what it does not know
        raise UnsupportedSchema(f"parameters: {exc}") from exc


def _json_strings_only(grammar: str) -> str:
    """The converter's string characters admit raw control characters (a newline, say), which JSON forbids
    and ``json.loads`` rejects; admit them only escaped."""
    return grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x00-\\x1F\\x7F]')


class _BoundedConverter(SchemaConverter):  # type: ignore[misc]
    def visit(self, schema: dict[str, Any], name: str) -> str:
        kind = schema.get("type")
        if kind in ("integer", "number") and any(k in schema for k in _BOUNDS) and "enum" not in schema:
            rule_name = name or "root"
            if kind == "integer":
                return str(self._add_rule(rule_name, f"({integer_range(*_integer_bounds(schema))}) space"))
            return str(self._add_rule(rule_name, f"({number_range(*_integer_bounds(schema))}) space"))
        if kind == "string" and ("minLength" in schema or "maxLength" in schema) and _plain_string(schema):
            return str(self._add_rule(name or "root", _sized_string(self, schema)))
        return str(super().visit(schema, name))


def _plain_string(schema: dict[str, Any]) -> bool:
    return not any(key in schema for key in ("pattern", "format", "enum", "const"))


def _sized_string(converter: SchemaConverter, schema: dict[str, Any]) -> str:
    """llama.cpp's own ``{m,n}`` repetition: the converter spells a length bound as n nested optional groups,
    which llama.cpp's parser cannot read past about a thousand (a 4000-character code argument, say)."""
    char = converter._add_primitive("char", PRIMITIVE_RULES["char"])
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if low > MAX_MIN_LENGTH:
        raise UnsupportedSchema(f"parameters: a minLength above {MAX_MIN_LENGTH} cannot be enforced while decoding")
    bound = f"{{{low},{int(high)}}}" if high is not None else f"{{{low},}}"
    return f'"\\"" {char}{bound} "\\"" space'


def _integer_bounds(schema: dict[str, Any]) -> tuple[int, int]:
    """The smallest and largest integers the bounds admit (inclusive and exclusive forms together)."""
    limit = 10**MAX_DIGITS - 1
    lows, highs = [-limit], [limit]
    if isinstance(schema.get("minimum"), int | float):
        lows.append(math.ceil(schema["minimum"]))
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    if isinstance(schema.get("maximum"), int | float):
        highs.append(math.floor(schema["maximum"]))
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    lo, hi = max(lows), min(highs)
    if lo > hi:
        raise UnsupportedSchema("parameters: no integer value satisfies its bounds")
    return lo, hi


def integer_range(lo: int, hi: int) -> str:
    """All decimal integers in [lo, hi], without leading zeros and without "-0"."""
    parts = []
    if lo < 0:
        parts.append(f'"-" ({_natural_range(max(1, -hi), -lo)})' if hi < 0 else f'"-" ({_natural_range(1, -lo)})')
    if hi >= 0:
        parts.append(_natural_range(max(lo, 0), hi))
    return " | ".join(f"({p})" for p in parts)


def number_range(lo: int, hi: int) -> str:
    """Numbers whose value lies in [lo, hi]: the integers, and decimals on every integer part from which no
    fraction can leave the range (i + 1 <= hi going up, i - 1 >= lo going down)."""
    alternatives = [f"({integer_range(lo, hi)})"]
    if max(lo, 0) <= hi - 1:
        alternatives.append(f"({_natural_range(max(lo, 0), hi - 1)}) {FRACTION}")
    if lo + 1 <= min(hi, -1):
        alternatives.append(f'"-" ({_natural_range(-min(hi, -1), -(lo + 1))}) {FRACTION}')
    return " | ".join(alternatives)


def _natural_range(lo: int, hi: int) -> str:
    """Decimal strings of the integers in [lo, hi], 0 <= lo <= hi."""
    alternatives = []
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 10 ** (digits - 1) if digits > 1 else 0)
        b = min(hi, 10**digits - 1)
        if a <= b:
            alternatives.append(_same_length(str(a), str(b)))
    return " | ".join(f"({alt})" for alt in alternatives)


def _same_length(a: str, b: str) -> str:
    """All digit strings s with a <= s <= b, for a and b of the same length."""
    if a == b:
        return f'"{a}"'
    rest = len(a) - 1
    if rest == 0:
        return f"[{a}-{b}]"
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        return f"[{a[0]}-{b[0]}] [0-9]{{{rest}}}"
    if a[0] == b[0]:
        return f'"{a[0]}" ({_same_length(a[1:], b[1:])})'
    parts = [f'"{a[0]}" ({_same_length(a[1:], "9" * rest)})']
    if int(b[0]) - int(a[0]) > 1:
        parts.append(f"[{int(a[0]) + 1}-{int(b[0]) - 1}] [0-9]{{{rest}}}")
    parts.append(f'"{b[0]}" ({_same_length("0" * rest, b[1:])})')
    return " | ".join(f"({p})" for p in parts)
