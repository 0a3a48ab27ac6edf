"""The options of an ``openai`` model: where the upstreams are, what the model can do, and the transport limits.

Everything is flat so that one ``[models.<name>]`` table (or ``OPENINTERACTIONS_MODELS__<NAME>__<KEY>``)
configures it. The API key never appears in an error message, a log line or a ``repr``.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

Modality = Literal["text", "image", "audio", "video", "document"]

# Chat-completion fields the request mapper sets itself; ``extra_body`` may not override them.
RESERVED_BODY_KEYS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "response_format",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "reasoning_effort",
        "n",
    }
)


def check_extra_body(body: dict[str, Any], reserved: frozenset[str] | set[str]) -> dict[str, Any]:
    """``extra_body`` of an OpenAI-compatible request: anything but the fields the request sets itself."""
    clash = sorted(reserved & body.keys())
    if clash:
        raise ValueError(f"extra_body may not set {', '.join(clash)}: they come from the request")
    return body


class UpstreamKey(BaseModel):
    """The key an OpenAI-compatible upstream wants: given, or named by an environment variable."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    api_key_env: str | None = None  # the name of an environment variable that holds the key

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("set api_key or api_key_env, not both")
        return self

    def key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        if self.api_key_env is not None:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ValueError(f"api_key_env: the environment variable {self.api_key_env} is not set")
            return value
        return None


class OpenAIOptions(UpstreamKey):
    # Where: one or more base URLs that end before /chat/completions, e.g. "http://10.0.0.5:8000/v1".
    base_urls: list[str] = Field(min_length=1)
    model: str | None = None  # the upstream's model name; by default the name this server serves it under

    # What the model can do. A request that needs more is a 400, never a field quietly dropped.
    supports_tools: bool = True
    supports_required_tool_choice: bool = True  # honours tool_choice "required" (for "any" with several tools)
    supports_json_schema: bool = True
    # "json_schema": OpenAI's {"type": "json_schema", ...}; "json_object": {"type": "json_object", "schema": ...}
    # (llama-cpp-python's server, which rejects the former).
    json_schema_style: Literal["json_schema", "json_object"] = "json_schema"
    supports_reasoning: bool = False  # the model reasons (reasoning fields or <think> text): thought steps
    reasoning_effort: bool = True  # with supports_reasoning: send thinking_level as reasoning_effort
    # <think>…</think> in content: "parse" routes it to thoughts; "starts_open" also treats the output as
    # starting inside a think block (templates that put <think> in the prompt); "off" leaves it as text.
    think_tags: Literal["parse", "starts_open", "off"] = "parse"
    input_modalities: list[Modality] = Field(default_factory=lambda: ["text"])  # type: ignore[arg-type]
    max_output_tokens: int | None = Field(default=None, ge=1)  # sent when the request sets none
    max_tokens_field: Literal["both", "max_tokens", "max_completion_tokens"] = "both"
    include_usage: bool = True  # ask for usage in the stream (stream_options.include_usage)
    # How to continue an answer cut off by a crash: its text so far as a last assistant message that the model
    # goes on from. "continue_final_message": with "continue_final_message": true and "add_generation_prompt":
    # false in the body (vLLM, SGLang, llama.cpp's server); "prefix": with "prefix": true on that message
    # (DeepSeek's beta endpoint, Mistral); "none": the cut step is closed and the round starts again.
    continuation: Literal["none", "continue_final_message", "prefix"] = "none"
    extra_body: dict[str, Any] = Field(default_factory=dict)  # more chat-completion fields, sent as they are

    # Transport: seconds; the first byte covers queueing and prompt processing upstream.
    connect_timeout: float = Field(default=5.0, gt=0)
    first_byte_timeout: float = Field(default=300.0, gt=0)
    idle_timeout: float = Field(default=120.0, gt=0)
    health_check_interval: float = Field(default=10.0, ge=0)  # 0: no periodic checks
    balancing: Literal["round_robin", "least_busy"] = "round_robin"
    max_connections: int = Field(default=1024, ge=1)
    # "lean": this backend's HTTP/1.1 transport for httpx (wire.py, several times cheaper per token); "httpx":
    # httpx's own, should an upstream need something the lean one does not do. Neither reads proxy variables.
    http_transport: Literal["lean", "httpx"] = "lean"

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        out = []
        for raw in urls:
            try:
                url = httpx.URL(raw)
            except httpx.InvalidURL:
                raise ValueError(f"{raw!r} is not a URL") from None
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"{raw!r} is not an http(s) URL")
            if url.userinfo:
                raise ValueError("base URLs may not carry credentials; set api_key or api_key_env")
            out.append(str(url).rstrip("/"))
        if len(set(out)) != len(out):
            raise ValueError("a base URL is listed twice")
        return out

    @field_validator("input_modalities")
    @classmethod
    def _modalities(cls, modalities: list[Modality]) -> list[Modality]:
        if "text" not in modalities:
            raise ValueError("input_modalities must include 'text'")
        return modalities

    @field_validator("extra_body")
    @classmethod
    def _extra(cls, body: dict[str, Any]) -> dict[str, Any]:
        return check_extra_body(body, RESERVED_BODY_KEYS)


def parse_options(options: dict[str, Any]) -> OpenAIOptions:
    """Validate, with messages that name the field but never show its value (the key could be one)."""
    try:
        return OpenAIOptions.model_validate(options)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            where = ".".join(str(part) for part in error["loc"]) or "options"
            problems.append(f"{where}: {error['msg']}")
        raise ValueError("openai backend options: " + "; ".join(problems)) from None
