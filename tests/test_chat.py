"""``openinteractions chat`` under a pseudo-terminal (pexpect): it streams the answer, shows a server tool step
on one line, keeps the conversation, and Ctrl-C (the terminal's own, a SIGINT from the line discipline) cancels
the run on the server, not the program."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from live import FIXTURES, LiveServer

KEY = "chat-key-00001"


def rule(events: list[dict[str, Any]], **when: Any) -> dict[str, Any]:
    return {"when": when, "events": events}


SEARCH = {"call": {"name": "google_search", "arguments": {"queries": ["highest mountain Europe"]}}}
SCRIPT = {
    "rules": [
        rule([{"thought": "Counting slowly."}, {"text": "one, "}, {"hang": True}], input_contains="count"),
        rule([{"text": "Elbrus, as I said."}], input_contains="again", turn=2),
        rule([{"text": "never"}], input_contains="again"),
        rule([{"text": "found it"}], last_step="google_search_result"),
        rule([SEARCH], tool="google_search"),
        rule([{"text": "Hello "}, {"text": "there."}]),
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("chat")
    (workdir / "script.json").write_text(json.dumps(SCRIPT))
    live = LiveServer(workdir, {
        "auth": {"api_keys": [KEY]},
        "models.m": {"backend": "scripted", "script": workdir / "script.json"},
        "tools.code_execution": {"enabled": False},
    })  # fmt: skip
    live.index(FIXTURES / "corpus")
    yield live.start()
    live.stop()


def chat(server: LiveServer, *options: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "openinteractions", "chat", "--url", server.url, "--api-key", KEY,
                                           "--model", "m", *options], encoding="utf-8", timeout=20)  # fmt: skip
    child.expect("Ctrl-D ends.")
    child.expect("> ")
    return child


def test_a_conversation_streams_and_goes_on(server: LiveServer) -> None:
    child = chat(server, "--tools", "google_search", "--no-color")
    child.sendline("hi, find the highest mountain")
    child.expect('⚙ google_search queries=\\["highest mountain Europe"\\]')
    child.expect("→ \\d+ results")
    child.expect("found it")
    child.expect("\\[completed; \\d+ in, \\d+ out\\]")
    child.expect("> ")
    child.sendline("say it again")
    child.expect("Elbrus, as I said.")  # the second turn continues the first (turn 2 of the chain)
    child.expect("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    assert child.wait() == 0


def test_ctrl_c_cancels_the_run_not_the_program(server: LiveServer) -> None:
    child = chat(server)
    child.sendline("count to ten")
    child.expect(re.escape("\x1b[2mCounting slowly.\x1b[0m"))  # a thought summary, dimmed
    child.expect("one, ")
    child.sendintr()  # ^C from the terminal
    child.expect(re.escape("[cancelled: cancelled]"))  # the server's answer to the cancel
    child.expect("> ")
    child.sendline("hello")
    child.expect("Hello there.")
    child.expect("> ")
    child.sendintr()  # at the prompt: a new line, still running
    child.expect("> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    assert child.wait() == 0
