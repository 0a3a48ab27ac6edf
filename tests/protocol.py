"""The grammar of a stream, checked event by event (spec §5.1), for tests of real models."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from openinteractions.schema.events import Event

_event = TypeAdapter(Event)


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Assert the stream is protocol-perfect; return its steps folded (type, text, arguments...)."""
    assert events[0]["event_type"] == "interaction.created"
    assert events[0]["interaction"]["status"] == "in_progress"
    assert [e["event_id"] for e in events] == [str(i) for i in range(1, len(events) + 1)]
    terminal = events[-1]["event_type"]
    assert terminal in ("interaction.completed", "error")
    steps: list[dict[str, Any]] = []
    open_index = None
    for event in events:
        _event.validate_python(event)  # every event matches the schema, discriminators included
        kind = event["event_type"]
        if kind == "step.start":
            assert open_index is None, "a step started while another was open"
            assert event["index"] == len(steps)
            open_index = event["index"]
            steps.append({"type": event["step"]["type"], "start": event["step"], "deltas": []})
        elif kind == "step.delta":
            assert event["index"] == open_index
            steps[-1]["deltas"].append(event["delta"])
        elif kind == "step.stop":
            assert event["index"] == open_index
            open_index = None
        elif kind in ("interaction.completed", "error"):
            assert open_index is None, "the stream ended with a step open"
    for step in steps:
        types = [d["type"] for d in step["deltas"]]
        if step["type"] == "thought":
            assert types[-1] == "thought_signature" and types.count("thought_signature") == 1
            step["summary"] = "".join(d["content"]["text"] for d in step["deltas"] if d["type"] == "thought_summary")
        elif step["type"] == "model_output":
            assert set(types) <= {"text", "text_annotation_delta", "image", "audio"}
            step["text"] = "".join(d["text"] for d in step["deltas"] if d["type"] == "text")
        elif step["type"] == "function_call":
            fragments = "".join(d["arguments"] for d in step["deltas"])
            if terminal == "error":  # a failed run may have been cut off inside the call
                step["fragments"] = fragments
            else:
                step["arguments"] = json.loads(fragments) if fragments else {}
            step["name"] = step["start"]["name"]
            step["id"] = step["start"]["id"]
    return {"steps": steps, "status": events[-1]["interaction"]["status"] if terminal != "error" else "failed"}
