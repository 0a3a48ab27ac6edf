"""The request side of the ``openai`` backend: options, capabilities, and the chat-completion body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from openinteractions.backends.base import BackendError, GenerationRequest, Resume, continues
from openinteractions.backends.openai import create
from openinteractions.backends.openai.backend import capabilities_for
from openinteractions.backends.openai.options import parse_options
from openinteractions.backends.openai.request import chat_body
from openinteractions.engine.validate import check_capabilities
from openinteractions.errors import ApiError
from openinteractions.schema.generation import GenerationConfig, TextResponseFormat
from openinteractions.schema.requests import CreateInteractionRequest, normalize_input
from openinteractions.schema.steps import Step
from openinteractions.schema.tools import FunctionTool

_steps = TypeAdapter(list[Step])
BASE = {"base_urls": ["http://127.0.0.1:9/v1"]}
WEATHER = FunctionTool(name="get_weather", description="Weather", parameters={"type": "object", "properties": {}})
TIME = FunctionTool(name="get_time")


def body(history: list[dict[str, Any]] | None = None, options: dict[str, Any] | None = None, **fields: Any) -> Any:
    request = GenerationRequest(
        model="served-name", history=_steps.validate_python(history or [{"type": "user_input", "content": []}])
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return chat_body(request, parse_options({**BASE, **(options or {})}))


def test_a_conversation_becomes_chat_messages() -> None:
    history = [
        {
            "type": "user_input",
            "content": [{"type": "text", "text": "Weather in Paris "}, {"type": "text", "text": "?"}],
        },
        {"type": "thought", "signature": "c2ln"},
        {"type": "model_output", "content": [{"type": "text", "text": "Let me look."}]},
        {"type": "function_call", "id": "c1", "name": "get_weather", "arguments": {"location": "Paris"}},
        {"type": "function_call", "id": "c2", "name": "get_time", "arguments": {}},
        {
            "type": "function_result",
            "call_id": "c1",
            "name": "get_weather",
            "result": {"content": [{"type": "text", "text": '{"weather": "Sunny"}'}]},
        },
        {"type": "function_result", "call_id": "c2", "result": {"error": "no clock"}, "is_error": True},
        {"type": "model_output", "content": [{"type": "text", "text": "Sunny."}]},
        {"type": "user_input", "content": [{"type": "text", "text": "Thanks"}]},
    ]
    sent = body(history, system_instruction="Be brief.")
    assert sent["model"] == "served-name" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris ?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"weather": "Sunny"}'},
        {"role": "tool", "tool_call_id": "c2", "content": 'Error: {"error": "no clock"}'},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Thanks"},
    ]


def test_server_tool_steps_replay_as_tool_calls_and_results() -> None:
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "News?"}]},
        {"type": "google_search_call", "id": "s1", "arguments": {"queries": ["news today"]}},
        {
            "type": "google_search_result",
            "call_id": "s1",
            "result": [{"title": "Daily", "url": "https://example.com/d", "snippet": "All quiet."}],
        },
        {"type": "code_execution_call", "id": "x1", "arguments": {"code": "print(1)", "language": "python"}},
        {"type": "code_execution_result", "call_id": "x1", "result": "1\n"},
    ]
    messages = body(history)["messages"]
    assert messages[1]["tool_calls"] == [
        {
            "id": "s1",
            "type": "function",
            "function": {"name": "google_search", "arguments": '{"queries": ["news today"]}'},
        }
    ]
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "s1",
        "content": "- Daily (https://example.com/d): All quiet.",
    }
    assert messages[3]["tool_calls"][0]["function"] == {"name": "code_execution", "arguments": '{"code": "print(1)"}'}
    assert messages[4] == {"role": "tool", "tool_call_id": "x1", "content": "1\n"}


def test_a_call_without_text_before_it_has_empty_content_not_null() -> None:
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "hi"}]},
        {"type": "function_call", "id": "c1", "name": "f", "arguments": {}},
    ]
    assert body(history)["messages"][-1]["content"] == ""


def test_images_and_audio_as_content_parts() -> None:
    history = [
        {
            "type": "user_input",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "data": "iVBORw0K", "mime_type": "image/png"},
                {"type": "image", "uri": "https://example.com/cat.jpg", "resolution": "low"},
                {"type": "image", "uri": "https://example.com/dog.jpg", "resolution": "ultra_high"},
                {"type": "image", "uri": "https://example.com/owl.jpg", "resolution": "medium"},
                {"type": "audio", "data": "UklGRg", "mime_type": "audio/wav"},
            ],
        }
    ]
    sent = body(history, {"input_modalities": ["text", "image", "audio"]})
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/owl.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg", "format": "wav"}},
    ]


@pytest.mark.parametrize(
    ("block", "options", "message"),
    [
        ({"type": "image", "data": "x", "mime_type": "image/png"}, {}, "image input .* not supported"),
        ({"type": "image", "data": "x"}, {"input_modalities": ["text", "image"]}, "needs 'mime_type'"),
        ({"type": "audio", "data": "x", "mime_type": "audio/ogg"}, {"input_modalities": ["text", "audio"]}, "wav"),
    ],
)
def test_inputs_the_model_cannot_take_are_400s(block: dict[str, Any], options: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendError, match=message) as caught:
        body([{"type": "user_input", "content": [block]}], options)
    assert caught.value.code == "invalid_argument"


def test_tools_and_tool_choice() -> None:
    both = [WEATHER, TIME]
    sent = body(functions=both)
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER.parameters, "description": "Weather"},
        },
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert "tool_choice" not in sent
    choices = {
        "auto": "auto",
        "validated": "auto",
        "none": "none",
        "any": "required",
    }
    for mode, sent_choice in choices.items():
        assert body(functions=both, config=GenerationConfig(tool_choice=mode))["tool_choice"] == sent_choice
    one = body(functions=[WEATHER], config=GenerationConfig(tool_choice="any"))
    assert one["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    allowed = GenerationConfig.model_validate(
        {"tool_choice": {"allowed_tools": {"mode": "any", "tools": ["get_time"]}}}
    )
    restricted = body(functions=both, config=allowed)
    assert [t["function"]["name"] for t in restricted["tools"]] == ["get_time"]
    assert restricted["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


def test_any_among_several_tools_needs_an_upstream_that_honours_required() -> None:
    with pytest.raises(BackendError, match="allowed_tools"):
        body(
            functions=[WEATHER, TIME],
            config=GenerationConfig(tool_choice="any"),
            options={"supports_required_tool_choice": False},
        )


def test_generation_config() -> None:
    config = GenerationConfig(
        temperature=0.3, top_p=0.9, seed=7, max_output_tokens=64, stop_sequences=["\n\n"], thinking_level="high"
    )
    sent = body(config=config)
    assert {k: sent[k] for k in ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "stop")} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "max_tokens": 64,
        "max_completion_tokens": 64,
        "stop": ["\n\n"],
    }
    assert sent["reasoning_effort"] == "high"
    only = body(config=GenerationConfig(max_output_tokens=5), options={"max_tokens_field": "max_completion_tokens"})
    assert "max_tokens" not in only and only["max_completion_tokens"] == 5
    default = body(options={"max_output_tokens": 300, "max_tokens_field": "max_tokens"})
    assert default["max_tokens"] == 300 and "max_completion_tokens" not in default
    assert "max_tokens" not in body()


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fmt = TextResponseFormat.model_validate({"type": "text", "schema": schema})
    assert body(response_format=fmt)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    styled = body(response_format=fmt, options={"json_schema_style": "json_object"})
    assert styled["response_format"] == {"type": "json_object", "schema": schema}
    plain_json = TextResponseFormat(mime_type="application/json")
    assert body(response_format=plain_json)["response_format"] == {"type": "json_object"}
    assert "response_format" not in body(response_format=TextResponseFormat(mime_type="text/plain"))


def test_upstream_model_name_and_extra_body() -> None:
    sent = body(options={"model": "Qwen/Qwen3-8B", "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}})
    assert sent["model"] == "Qwen/Qwen3-8B"
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    with pytest.raises(ValueError, match="extra_body may not set messages"):
        parse_options({**BASE, "extra_body": {"messages": []}})


def test_option_errors_never_show_the_key() -> None:
    secret = "sk-very-secret-0123456789"
    for options in (
        {"base_urls": "not a list", "api_key": secret},
        {"base_urls": ["ftp://x"], "api_key": secret},
        {**BASE, "api_key": secret, "api_key_env": "X"},
        {**BASE, "api_kee": secret},
        {**BASE, "api_key": [secret]},
    ):
        with pytest.raises(ValueError) as caught:
            create(options, None)  # type: ignore[arg-type]
        assert "0123456789" not in str(caught.value)
    with pytest.raises(ValueError, match="credentials"):
        parse_options({"base_urls": ["http://user:pw@host/v1"]})
    assert secret not in repr(parse_options({**BASE, "api_key": secret}))


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-from-env")
    assert parse_options({**BASE, "api_key_env": "UPSTREAM_KEY"}).key() == "sk-from-env"
    monkeypatch.delenv("UPSTREAM_KEY")
    with pytest.raises(ValueError, match="UPSTREAM_KEY is not set"):
        create({**BASE, "api_key_env": "UPSTREAM_KEY"}, None)  # type: ignore[arg-type]


def _check(options: dict[str, Any], request: dict[str, Any]) -> None:
    req = CreateInteractionRequest.model_validate({"model": "m", "input": "hi", **request})
    caps = capabilities_for(parse_options({**BASE, **options}))
    check_capabilities(req, caps, "m", normalize_input(req.input), lambda tool: None)


@pytest.mark.parametrize(
    ("options", "request_fields", "message"),
    [
        ({}, {"generation_config": {"thinking_level": "low"}}, "thinking_level"),
        ({}, {"generation_config": {"thinking_summaries": "auto"}}, "thinking_summaries"),
        (
            {"supports_reasoning": True, "reasoning_effort": False},
            {"generation_config": {"thinking_level": "low"}},
            "level",
        ),
        ({"supports_json_schema": False}, {"response_format": {"type": "text", "schema": {"type": "object"}}}, "JSON"),
        ({"supports_tools": False}, {"tools": [{"type": "function", "name": "f"}]}, "(function|tool) calling"),
        ({}, {"input": [{"type": "image", "data": "eA==", "mime_type": "image/png"}]}, "image input"),
        ({}, {"generation_config": {"speech_config": {"voice": "x"}}}, "speech_config"),
    ],
)
def test_what_the_upstream_cannot_honour_is_a_400(
    options: dict[str, Any], request_fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiError, match=message) as caught:
        _check(options, request_fields)
    assert caught.value.http_status == 400


def test_what_it_can_honour_passes() -> None:
    _check({"supports_reasoning": True}, {"generation_config": {"thinking_level": "low", "thinking_summaries": "auto"}})
    _check(
        {"input_modalities": ["text", "image"]},
        {"input": [{"type": "image", "data": "eA==", "mime_type": "image/png"}]},
    )
    _check({}, {"generation_config": {"temperature": 0.1, "top_p": 0.5, "seed": 1, "stop_sequences": ["x"]}})


def test_prepare_encodes_the_body_once() -> None:
    backend = create({**BASE, "api_key": "sk-x"}, None)  # type: ignore[arg-type]
    request = GenerationRequest(model="m", history=_steps.validate_python([{"type": "user_input", "content": []}]))
    assert json.loads(backend.prepare(request))["messages"] == [{"role": "user", "content": ""}]


TEXT = {"type": "model_output", "content": [{"type": "text", "text": "Once upon"}]}
THOUGHT = {"type": "thought", "signature": "c2ln"}
CALL = {"type": "function_call", "id": "c1", "name": "get_weather", "arguments": {}}


def resume(steps: list[dict[str, Any]], open_step: str | None, prefill: str = "") -> Resume:
    return Resume(_steps.validate_python(steps), open_step, prefill)


@pytest.mark.parametrize(
    ("shape", "message", "flags"),
    [
        ("continue_final_message", {}, {"continue_final_message": True, "add_generation_prompt": False}),
        ("prefix", {"prefix": True}, {}),
    ],
)
def test_a_cut_answer_is_the_last_assistant_message_in_the_configured_shape(
    shape: str, message: dict[str, Any], flags: dict[str, Any]
) -> None:
    sent = body(options={"continuation": shape}, resume=resume([THOUGHT], "model_output", " a time"))
    assert sent["messages"][-1] == {"role": "assistant", "content": " a time", **message}
    assert {k: sent[k] for k in ("continue_final_message", "add_generation_prompt") if k in sent} == flags
    earlier = body(options={"continuation": shape}, resume=resume([TEXT], "model_output", "there"))
    assert earlier["messages"][-1]["content"] == "Once upon\n\nthere"  # the round's text steps, then the cut one


def test_without_continuation_or_text_so_far_the_request_is_an_ordinary_one() -> None:
    plain = body()
    assert body(resume=resume([], "model_output", "Once")) == plain  # continuation "none", the default
    assert body(options={"continuation": "prefix"}, resume=resume([], "model_output", "")) == plain


def test_the_upstream_continues_only_a_cut_answer_in_a_round_of_text() -> None:
    """Which points the run hands an openai backend with continuation, and which it restarts."""
    caps = capabilities_for(parse_options({**BASE, "continuation": "continue_final_message"}))
    assert caps.continuation and not capabilities_for(parse_options(BASE)).continuation
    assert continues(caps, resume([], None))
    assert continues(caps, resume([THOUGHT, TEXT], "model_output", "x"))
    assert not continues(caps, resume([], "thought", "x"))  # reasoning cannot be prefilled
    assert not continues(caps, resume([THOUGHT], None))
    assert not continues(caps, resume([CALL], "model_output", "x"))  # text after a call cannot be prefilled
    assert not continues(caps, resume([], "function_call"))
