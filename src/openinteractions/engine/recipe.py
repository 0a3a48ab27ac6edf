"""A run's recipe: everything needed to start the run, or to start it again after a crash, and nothing live.

It is written with the interaction's row when the run is created (the ``recipe`` column, JSON; the normalised
input is the row's ``input_steps``). The executor resolves the live parts from it (the backend, the server
tools, the history of the chain) and the event log holds how far the run got.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from .. import jsontext

RECIPE_VERSION = 2  # 2: ``request`` leaves out what ``echo`` holds (1 held both; still read)


@dataclass(frozen=True)
class RunRecipe:
    interaction_id: str
    owner: str
    model: str  # as the resource shows it (what the request named)
    route: str  # the served model it resolved to
    store: bool
    background: bool
    created_at: float
    expires_at: float
    previous_interaction_id: str | None
    request: dict[str, Any]  # the validated create request as JSON, without its input and ``echo``'s fields
    echo: dict[str, Any]  # request fields shown on the resource, and the raw input (the row's ``request``)
    input_steps: list[dict[str, Any]]  # the normalised input, as wire JSON (the row's ``input_steps``)
    timeout: float
    max_tool_rounds: int
    tool_budget: float
    agent: str | None = None  # an agent interaction: the agent's name (``route`` is the model it thinks with)

    @property
    def create_request(self) -> dict[str, Any]:
        """The validated create request as JSON, without its input: the row stores each field once."""
        return {**{k: v for k, v in self.echo.items() if k != "input"}, **self.request}

    @property
    def summaries(self) -> bool:
        request = self.create_request
        config = (request.get("agent_config") if self.agent else request.get("generation_config")) or {}
        return config.get("thinking_summaries") == "auto"

    def dumps(self) -> str:
        """The recipe column: the row keeps ``echo`` and ``input_steps`` in columns of their own."""
        # Not asdict(), which deep-copies every field (the request, the input) only to serialise the copy.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("echo", "input_steps")}
        data["version"] = RECIPE_VERSION
        return jsontext.dumps(data)

    @classmethod
    def loads(cls, text: str, echo: dict[str, Any], input_steps: list[dict[str, Any]]) -> RunRecipe:
        data = json.loads(text)
        if data.pop("version", None) not in (1, RECIPE_VERSION):
            raise ValueError("a recipe written by another version of the server")
        return cls(**data, echo=echo, input_steps=input_steps)
