"""The Interaction resource, rendered from a live run, from a stored record, or from the committed events of a
run executing on another server."""

from __future__ import annotations

import json
from typing import Any

from ..ids import rfc3339_from_epoch
from ..schema.interaction import Interaction
from ..store.base import StoredInteraction
from .assembler import Assembler
from .resume import read_log
from .run import Run


def _resource(
    summary: dict[str, Any], steps: Any, errors: Any, echo: dict[str, Any], extra: dict[str, Any], include_input: bool
) -> Interaction:
    fields = {k: v for k, v in echo.items() if k != "input"}
    fields.update(summary)
    if echo.get("agent"):  # an agent's resource names the agent, not the model it thinks with
        fields.pop("model", None)
    fields.update(extra)
    fields["steps"] = steps
    if errors:
        fields["errors"] = errors
    if include_input and echo.get("input") is not None:
        fields["input"] = echo["input"]
    return Interaction.model_validate(fields)


def render_run(run: Run, include_input: bool) -> Interaction:
    """A run of this process: while it runs, as far as its log is committed."""
    view = run.committed_view()
    summary = dict(view.summary or run.assembler.summary)  # nothing committed yet: as announced
    summary["updated"] = rfc3339_from_epoch(run.updated_at)
    extra = {"previous_interaction_id": run.spec.previous_interaction_id}
    return _resource(
        summary,
        view.steps(),
        view.errors,
        run.spec.echo,
        {k: v for k, v in extra.items() if v},
        include_input,
    )


def render_folded(record: StoredInteraction, frames: list[bytes], include_input: bool) -> Interaction:
    """A run executing on another server, from its committed events."""
    assembler = Assembler()
    read_log(frames, assembler)
    summary = dict(assembler.summary) or {"id": record.id, "status": record.status, "model": record.model}
    summary.setdefault("created", rfc3339_from_epoch(record.created_at))
    summary["updated"] = summary["created"]
    summary.setdefault("service_tier", "standard")
    extra = {"previous_interaction_id": record.previous_interaction_id} if record.previous_interaction_id else {}
    return _resource(summary, assembler.steps(), assembler.errors, record.request or {}, extra, include_input)


def render_record(record: StoredInteraction, include_input: bool) -> Interaction:
    summary: dict[str, Any] = {
        "id": record.id,
        "status": record.status,
        "model": record.model,
        "created": rfc3339_from_epoch(record.created_at),
        "updated": rfc3339_from_epoch(record.updated_at),
        "service_tier": "standard",
    }
    if record.usage:
        summary["usage"] = json.loads(record.usage)
    extra = {"previous_interaction_id": record.previous_interaction_id} if record.previous_interaction_id else {}
    errors = json.loads(record.errors) if record.errors else None
    return _resource(summary, json.loads(record.steps), errors, record.request or {}, extra, include_input)
