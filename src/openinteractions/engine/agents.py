"""Agents: names that map to a program (today: deep research), the served model it thinks with, and budgets.

The three Deep Research names are built in; ``[agents.<name>]`` adds agents or overrides them. An agent request
is checked here: the combinations the Python SDK refuses client-side, ``background``, and ``agent_config`` per
its ``type`` (what this server does not implement is a 400 that names it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends.registry import BackendRegistry
from ..config import AgentSettings
from ..errors import ApiError, invalid_argument, not_found, not_supported
from ..schema.requests import CreateInteractionRequest

DEEP_RESEARCH_AGENTS = (
    "deep-research-preview-04-2026",
    "deep-research-pro-preview-12-2025",
    "deep-research-max-preview-04-2026",
)
_KNOWN_CONFIG_TYPES = ("deep-research", "dynamic", "antigravity", "code-mender")
_DEEP_RESEARCH_FIELDS = {
    "type", "thinking_summaries", "visualization", "collaborative_planning", "enable_bigquery_tool"
}  # fmt: skip


@dataclass(frozen=True)
class Agent:
    name: str
    model: str  # the served model it thinks with
    settings: AgentSettings


class AgentRegistry:
    def __init__(self, configured: dict[str, AgentSettings], models: BackendRegistry) -> None:
        self._settings = {name: AgentSettings() for name in DEEP_RESEARCH_AGENTS} | configured
        self._models = models

    def names(self) -> list[str]:
        return list(self._settings)

    def resolve(self, name: str) -> Agent | None:
        settings = self._settings.get(name.removeprefix("agents/"))
        if settings is None:
            return None
        return Agent(name.removeprefix("agents/"), self._thinker(settings), settings)

    def _thinker(self, settings: AgentSettings) -> str:
        if settings.model is not None:
            return settings.model
        from ..backends.llamacpp.models import DEFAULT_MODEL_NAME

        routes = self._models.routes()
        if any(route.name == DEFAULT_MODEL_NAME for route in routes) or not routes:
            return DEFAULT_MODEL_NAME
        return routes[0].name


def check_agent_shape(req: CreateInteractionRequest) -> None:
    """The request-level checks of an agent interaction (``agent`` or ``agent_config`` is set)."""
    for other in ("model", "generation_config", "cached_content"):
        if getattr(req, other) is not None:
            with_what = "'agent'" if req.agent is not None else "'agent_config'"
            raise invalid_argument(f"'{other}' cannot be combined with {with_what}: set one of 'model' or 'agent'")
    if req.agent is None:
        raise invalid_argument("'agent_config' belongs to agent interactions: 'agent' is required with it")
    if req.background is not True:
        raise invalid_argument("agent interactions run in the background: set 'background': true")
    unsupported = {
        "tools": "'tools' with an agent (it uses the server's search and reader)",
        "response_format": "'response_format' with an agent",
        "response_mime_type": "'response_mime_type' with an agent",
        "environment": "'environment'",
    }
    for name, what in unsupported.items():
        if getattr(req, name) is not None:
            raise not_supported(what)
    check_agent_config(req.agent_config)


def check_agent_config(config: dict[str, Any] | None) -> None:
    if config is None:
        return
    kind = config.get("type")
    if kind not in _KNOWN_CONFIG_TYPES:
        raise invalid_argument(f"'agent_config.type' {kind!r} is unknown; expected one of {list(_KNOWN_CONFIG_TYPES)}")
    if kind != "deep-research":
        raise not_supported(f"'agent_config' of type {kind!r} ({kind} agents)")
    for name in config.keys() - _DEEP_RESEARCH_FIELDS:
        raise invalid_argument(f"'agent_config.{name}' is not a field of a deep-research agent_config")
    _choice(config, "thinking_summaries", ("auto", "none"))
    _choice(config, "visualization", ("off", "auto"))
    for flag in ("collaborative_planning", "enable_bigquery_tool"):
        if flag in config and not isinstance(config[flag], bool):
            raise invalid_argument(f"'agent_config.{flag}' must be a boolean")
    if config.get("enable_bigquery_tool"):
        raise not_supported("'agent_config.enable_bigquery_tool'", "not offered by this server")


def _choice(config: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    if name in config and config[name] not in allowed:
        raise invalid_argument(f"'agent_config.{name}' must be one of {list(allowed)}, got {config[name]!r}")


def agent_not_found(name: str, api_version: str) -> ApiError:
    return not_found(
        f"agents/{name.removeprefix('agents/')} is not found for API version {api_version}; "
        "this server's agents are the Deep Research names and those configured under [agents]"
    )


def check_agent_program(agent: Agent, config: dict[str, Any] | None) -> None:
    kind = (config or {}).get("type", agent.settings.program)
    if kind != agent.settings.program:
        raise invalid_argument(f"agent {agent.name!r} runs the {agent.settings.program!r} program, not {kind!r}")
