"""The configuration reference (docs/configuration-reference.md), generated from the settings model: every
section and key, its type, default and bounds from the pydantic fields, and what it does from the comments
written next to it in config.py. ``python -m openinteractions.config_reference`` prints it; a test fails when
the committed file differs, so a new setting cannot go undocumented."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from . import config

HEADER = """# Configuration reference

Generated from the settings model (`src/openinteractions/config.py`) by
`python -m openinteractions.config_reference`; `tests/test_config_reference.py` fails when it is out of date.
[configuration.md](configuration.md) is the guide: the file, the environment, and each backend's own options.
Every key can also be set from the environment: `OPENINTERACTIONS_<SECTION>__<KEY>` (e.g.
`OPENINTERACTIONS_SERVER__PORT=9000`).
"""


def render() -> str:
    comments = _comments(Path(inspect.getfile(config)).read_text())
    parts = [HEADER]
    top = [(name, field) for name, field in config.Settings.model_fields.items() if not _model_of(field)]
    parts.append(_table("Top level", top, comments.get("Settings", {})))
    for name, field in config.Settings.model_fields.items():
        parts.extend(_sections(name, field, comments))
    parts.extend(_declared_tool_sections())
    return "\n".join(parts)


def _declared_tool_sections() -> list[str]:
    """The sections of server tools whose modules declare their own settings (tools/kind.py)."""
    from .tools.registry import SERVER_TOOLS

    parts = []
    for kind in SERVER_TOOLS:
        model = kind.settings
        if model is None or kind.type in config.ToolsSettings.model_fields:
            continue
        comments = _comments(Path(inspect.getfile(model)).read_text()).get(model.__name__, {})
        fields = list(model.model_fields.items())
        parts.append(_table(f"[tools.{kind.type}]", fields, comments, inspect.getdoc(model) or ""))
    return parts


def _sections(path: str, field: FieldInfo, comments: dict[str, dict[str, str]]) -> list[str]:
    model = _model_of(field)
    if model is None:
        return []
    keyed = get_origin(field.annotation) is dict
    title = f"[{path}.<name>]" if keyed else f"[{path}]"
    note = comments.get("Settings", {}).get(path.rsplit(".", 1)[-1], "") if "." not in path else ""
    fields = [(name, f) for name, f in model.model_fields.items() if not _model_of(f)]
    own = comments.get(model.__name__, {})
    doc = inspect.getdoc(model) if model.__doc__ else ""
    intro = " ".join(part for part in (doc, note) if part)
    parts = [_table(title, fields, own, intro)] if fields or intro else []
    for name, child in model.model_fields.items():
        parts.extend(_sections(f"{path}.<name>.{name}" if keyed else f"{path}.{name}", child, comments))
    return parts


def _table(title: str, fields: list[tuple[str, FieldInfo]], comments: dict[str, str], intro: str = "") -> str:
    lines = [f"## `{title}`" if title.startswith("[") else f"## {title}", ""]
    if intro:
        lines += [intro, ""]
    lines += ["| key | type | default | what |", "|---|---|---|---|"]
    for name, field in fields:
        what = comments.get(name, "")
        lines.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {_cell(what)} |")
    return "\n".join(lines) + "\n"


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if get_origin(annotation) is dict:
        annotation = get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type(annotation: Any) -> str:
    text = repr(annotation) if get_origin(annotation) is not None else getattr(annotation, "__name__", repr(annotation))
    for noise in ("typing.", "pathlib.", "openinteractions.config.", "annotated_types.", "pydantic.fields."):
        text = text.replace(noise, "")
    text = re.sub(r"Annotated\[(\w+), FieldInfo\(.*?\]\)\]", r"\1", text)  # bounds show as the default's
    text = re.sub(r"Union\[(\w+), (\w+)\]", r"\1 | \2", text)
    return "`" + text.replace("|", "\\|") + "`"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        shown = "`[]`" if value == [] else "`{}`" if value == {} else "(a table)"
    elif field.default is PydanticUndefined:
        shown = "required"
    else:
        shown = f"`{field.default!r}`"
    bounds = []
    for item in field.metadata:
        for kind, sign, attribute in ((Ge, "≥", "ge"), (Gt, ">", "gt"), (Le, "≤", "le"), (Lt, "<", "lt")):
            if isinstance(item, kind):
                bounds.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, MinLen):
            bounds.append(f"length ≥ {item.min_length}")
    return shown + (f" ({', '.join(bounds)})" if bounds else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _comments(source: str) -> dict[str, dict[str, str]]:
    """Per class, per field: the comment lines just above its line and the comment at its end."""
    lines = source.splitlines()
    found: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        fields = found.setdefault(node.name, {})
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                above: list[str] = []
                row = item.lineno - 2
                while row >= 0 and lines[row].strip().startswith("#"):
                    above.insert(0, lines[row].strip().lstrip("#").strip())
                    row -= 1
                end = lines[(item.end_lineno or item.lineno) - 1]
                trailing = end.split("  # ", 1)[1].strip() if "  # " in end else ""
                fields[item.target.id] = " ".join(part for part in (" ".join(above), trailing) if part)
    return found


if __name__ == "__main__":
    print(render(), end="")
