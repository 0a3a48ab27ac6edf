"""``openinteractions chat``: a terminal client for any Interactions API server (this one by default).

It streams each answer as it comes: text as it is written, thought summaries dimmed, server tool steps on one
line each, images and audio as a note of their size; the conversation goes on with ``previous_interaction_id``.
Ctrl-C during an answer cancels that run on the server and returns to the prompt; Ctrl-C at the prompt clears
the line; Ctrl-D or ``/exit`` ends the chat, ``/new`` starts a new conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any, TextIO

import httpx

from .egress import Egress, OriginPolicy

_SERVER_TOOLS = ("google_search", "code_execution", "url_context")


class Screen:
    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color

    def write(self, text: str, style: str = "") -> None:
        codes = {"dim": "\x1b[2m", "bold": "\x1b[1m", "red": "\x1b[31m"}
        if self.color and style:
            text = f"{codes[style]}{text}\x1b[0m"
        self.out.write(text)
        self.out.flush()


class Chat:
    def __init__(self, args: argparse.Namespace, screen: Screen) -> None:
        self.args = args
        self.screen = screen
        self.egress = Egress("chat", OriginPolicy([args.url]))  # the one server it talks to, like any connection
        self.previous: str | None = None
        self.current: str | None = None

    def _http(self) -> httpx.AsyncClient:
        headers = {"x-goog-api-key": self.args.api_key} if self.args.api_key else {}
        return self.egress.client(base_url=self.args.url.rstrip("/"), headers=headers,
                                  timeout=httpx.Timeout(30, read=None))  # fmt: skip

    def request(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"input": text, "stream": True}
        if self.args.agent:
            body |= {"agent": self.args.agent, "background": True,
                     "agent_config": {"type": "deep-research", "thinking_summaries": "auto"}}  # fmt: skip
        else:
            body["model"] = self.args.model
            body["generation_config"] = {"thinking_summaries": "auto"}
        if self.args.system:
            body["system_instruction"] = self.args.system
        if self.args.tools:
            body["tools"] = [{"type": name} for name in self.args.tools]
        if self.previous is not None:
            body["previous_interaction_id"] = self.previous
        return body

    def turn(self, text: str) -> None:
        """One question and its streamed answer; a Ctrl-C meanwhile cancels the run."""
        self.current = None
        try:
            asyncio.run(self._stream(text))
        except KeyboardInterrupt:
            asyncio.run(self._cancel())
        self.screen.write("\n")

    async def _stream(self, text: str) -> None:
        async with self._http() as http, http.stream("POST", "/v1beta/interactions", json=self.request(text)) as r:
            if r.status_code != 200:
                await r.aread()
                self.screen.write(f"error {r.status_code}: {_message(r.text)}\n", "red")
                return
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    self.show(json.loads(line[6:]))

    async def _cancel(self) -> None:
        if self.current is None:
            self.screen.write("\n[stopped before the server answered]\n", "dim")
            return
        path = f"/v1beta/interactions/{self.current}"
        async with self._http() as http:
            answer = await http.post(f"{path}/cancel")
            if answer.status_code == 400:  # ended already: a foreground run ends when its stream is closed
                answer = await http.get(path)
        said = answer.json().get("status") if answer.status_code == 200 else None
        status = said or f"error {answer.status_code}: {_message(answer.text)}"
        self.screen.write(f"\n[cancelled: {status}]", "dim")
        self.previous = self.current  # what was said so far stays in the conversation

    def show(self, event: dict[str, Any]) -> None:
        kind = event.get("event_type")
        if kind == "interaction.created":
            self.current = event["interaction"]["id"]
        elif kind == "step.start":
            self.show_start(event["step"])
        elif kind == "step.delta":
            self.show_delta(event["delta"])
        elif kind == "step.stop":
            self.screen.write("")
        elif kind == "interaction.completed":
            self.previous = event["interaction"]["id"]
            self.show_end(event["interaction"])
        elif kind == "error":
            error = event.get("error") or {}
            self.screen.write(f"\n[error {error.get('code')}: {error.get('message')}]", "red")

    def show_start(self, step: dict[str, Any]) -> None:
        kind = step.get("type", "")
        if kind == "thought":
            self.screen.write("\n")
        elif kind.endswith("_call") and kind != "function_call":
            self.screen.write(f"\n⚙ {kind.removesuffix('_call')} ", "dim")
        elif kind == "model_output":
            self.screen.write("\n")

    def show_delta(self, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text":
            self.screen.write(delta["text"])
        elif kind == "thought_summary":
            self.screen.write(str((delta.get("content") or {}).get("text", "")), "dim")
        elif kind in ("image", "audio", "video", "document"):
            size = len(delta.get("data") or "") * 3 // 4
            self.screen.write(f"\n[{kind}: {delta.get('mime_type', '?')}, {size // 1024} KiB]\n", "dim")
        elif kind in ("google_search_call", "code_execution_call", "url_context_call"):
            self.screen.write(_compact(delta.get("arguments") or {}), "dim")
        elif kind in ("google_search_result", "code_execution_result", "url_context_result"):
            result = delta.get("result")
            said = f"{len(result)} results" if isinstance(result, list) else _shorten(str(result or ""))
            self.screen.write(f"→ {'error: ' if delta.get('is_error') else ''}{said}", "dim")

    def show_end(self, interaction: dict[str, Any]) -> None:
        status = interaction.get("status")
        usage = interaction.get("usage") or {}
        tokens = f"{usage.get('total_input_tokens', 0)} in, {usage.get('total_output_tokens', 0)} out"
        self.screen.write(f"\n[{status}; {tokens}]", "dim")


def _message(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return _shorten(text)


def _compact(arguments: dict[str, Any]) -> str:
    return _shorten(", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())) + " "


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run(args: argparse.Namespace) -> None:
    out = sys.stdout
    screen = Screen(out, color=out.isatty() and not args.no_color and "NO_COLOR" not in os.environ)
    chat = Chat(args, screen)
    who = f"agent {args.agent}" if args.agent else f"model {args.model}"
    screen.write(f"Chatting with {who} at {args.url}. /new starts over, /exit or Ctrl-D ends.\n", "dim")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    while True:
        try:
            text = input("> ")
        except KeyboardInterrupt:
            screen.write("\n")
            continue
        except EOFError:
            break
        text = text.strip()
        if text == "/exit":
            break
        if text == "/new":
            chat.previous = None
            screen.write("[new conversation]\n", "dim")
        elif text:
            chat.turn(text)
    screen.write("\n")


def add_parser(commands: Any) -> None:
    chat = commands.add_parser("chat", help="chat with a model or agent of a server, in the terminal")
    chat.add_argument("--url", default=os.environ.get("OPENINTERACTIONS_URL", "http://127.0.0.1:8080"))
    chat.add_argument(
        "--api-key", default=os.environ.get("OPENINTERACTIONS_API_KEY") or os.environ.get("GEMINI_API_KEY")
    )
    target = chat.add_mutually_exclusive_group()
    target.add_argument("--model", default="smollm2-135m-instruct", help="the model to talk to")
    target.add_argument("--agent", default=None, help="an agent (deep research) instead of a model")
    chat.add_argument("--system", default=None, help="a system instruction")
    chat.add_argument("--tools", default=[], type=lambda value: [t for t in value.split(",") if t],
                      help=f"server tools, comma-separated: {', '.join(_SERVER_TOOLS)}")  # fmt: skip
    chat.add_argument("--no-color", action="store_true")
    chat.set_defaults(func=run)
