"""Adding a server tool is its module and one line of tools/registry.py: the test does exactly that to a copy of
the package (and checks that nothing else of it changed), then drives the server that copy runs over HTTP — the
request validated, the model offered the tool as a function, the call run, its steps streamed and stored, a
chained turn rendered for both prompt-rendering backends."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from live import LiveServer, sse_events

PACKAGE = Path(__file__).parent.parent / "src" / "openinteractions"
MODEL = "gemini-3-flash-preview"
REGISTRY_LINE = '    "openinteractions.tools.mcp_server",\n'
TOY_LINE = '    "openinteractions.tools.word_count",\n'

TOY_MODULE = '''"""A toy server tool: the number of words (or characters) of a text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..schema.base import WireModel
from ..schema.functions import FunctionTool
from .kind import BaseServerTool, Outcome, ServerToolKind, ToolCallStep, ToolDeclaration, ToolResultStep

Unit = Literal["words", "characters"]


class WordCountSettings(BaseModel):
    """The toy tool's own settings."""

    model_config = ConfigDict(extra="forbid")
    unit: Unit = "words"  # what a request that names no unit counts


class WordCountTool(ToolDeclaration):
    type: Literal["word_count"] = "word_count"
    unit: Unit | None = None


class WordCountArguments(WireModel):
    text: str | None = None


class WordCountCallStep(ToolCallStep):
    type: Literal["word_count_call"] = "word_count_call"
    id: str
    arguments: WordCountArguments


class WordCountResultStep(ToolResultStep):
    type: Literal["word_count_result"] = "word_count_result"
    call_id: str
    result: list[dict[str, Any]]
    is_error: bool | None = None


class WordCountCallDelta(WireModel):
    type: Literal["word_count_call"] = "word_count_call"
    arguments: WordCountArguments


class WordCountResultDelta(WireModel):
    type: Literal["word_count_result"] = "word_count_result"
    result: list[dict[str, Any]]
    is_error: bool | None = None


class WordCount(BaseServerTool):
    name = step = "word_count"
    problem = None

    def __init__(self, unit: Unit = "words") -> None:
        self.unit = unit

    def declaration(self) -> FunctionTool:
        parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        return FunctionTool(name=self.name, description=f"Count the {self.unit} of a text.", parameters=parameters)

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        text = str(arguments.get("text") or "")
        count = len(text.split()) if self.unit == "words" else len(text)
        return Outcome([{"count": count, "unit": self.unit}])

    def for_request(self, tool: WordCountTool, owner: str) -> WordCount:
        return WordCount(tool.unit or self.unit)

    def close(self) -> None:
        pass


class WordCountKind(ServerToolKind):
    type = "word_count"
    request = WordCountTool
    call_step = WordCountCallStep
    result_step = WordCountResultStep
    call_delta = WordCountCallDelta
    result_delta = WordCountResultDelta
    settings = WordCountSettings

    def provision(self, settings: Any, data_dir: Path) -> WordCount:
        return WordCount(settings.declared(self.type, WordCountSettings).unit)


KIND = WordCountKind()
'''


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def package_with_toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package with the toy tool added: its module, and one line in the registry."""
    src = tmp_path_factory.mktemp("toy") / "src"
    copy = src / "openinteractions"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "tools" / "word_count.py").write_text(TOY_MODULE)
    registry = copy / "tools" / "registry.py"
    text = registry.read_text()
    assert text.count(REGISTRY_LINE) == 1
    registry.write_text(text.replace(REGISTRY_LINE, REGISTRY_LINE + TOY_LINE))
    return src


def test_the_toy_tool_is_one_module_and_one_registry_line(package_with_toy: Path) -> None:
    before, after = tree(PACKAGE), tree(package_with_toy / "openinteractions")
    assert set(after) - set(before) == {"tools/word_count.py"}
    changed = [name for name in before if before[name] != after[name]]
    assert changed == ["tools/registry.py"]
    diff = difflib.ndiff(
        before["tools/registry.py"].decode().splitlines(), after["tools/registry.py"].decode().splitlines()
    )
    assert [line for line in diff if line[:1] in "+-"] == ["+ " + TOY_LINE.rstrip("\n")]


@pytest.fixture(scope="module")
def toy_server(package_with_toy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"PYTHONPATH": os.pathsep.join([str(package_with_toy), os.environ.get("PYTHONPATH", "")])}
    sections: dict[str, dict[str, Any]] = {f"models.{MODEL}": {"backend": "scripted", "inline": True}}
    server = LiveServer(tmp_path_factory.mktemp("toy-server"), sections, env=env).start()
    yield server
    server.stop()


def script(*rounds: list[dict[str, Any]]) -> str:
    return json.dumps({"rounds": list(rounds)})


def counted(text: str) -> str:
    return script([{"call": {"name": "word_count", "arguments": {"text": text}}}], [{"text_from_result": "{result}"}])


def test_the_toy_tool_runs_streams_and_is_stored(toy_server: LiveServer) -> None:
    body = {"model": MODEL, "input": counted("one two three"), "tools": [{"type": "word_count"}], "stream": True}
    with toy_server.http() as http:
        events = sse_events(http.post("/v1beta/interactions", json=body).text)
        starts = [e["step"] for e in events if isinstance(e, dict) and e.get("event_type") == "step.start"]
        assert [s["type"] for s in starts] == ["word_count_call", "word_count_result", "model_output"]
        deltas = [e["delta"] for e in events if isinstance(e, dict) and e.get("event_type") == "step.delta"]
        assert {"type": "word_count_call", "arguments": {"text": "one two three"}} in deltas
        assert {"type": "word_count_result", "result": [{"count": 3, "unit": "words"}], "is_error": False} in deltas
        done = events[-2]
        assert isinstance(done, dict) and done["event_type"] == "interaction.completed"
        stored = http.get(f"/v1beta/interactions/{done['interaction']['id']}").json()
    steps = stored["steps"]
    assert steps[0] == {"type": "word_count_call", "id": steps[0]["id"], "arguments": {"text": "one two three"}}
    result = [{"count": 3, "unit": "words"}]
    assert steps[1] == {"type": "word_count_result", "call_id": steps[0]["id"], "result": result, "is_error": False}
    assert json.loads(steps[2]["content"][0]["text"]) == {"count": 3, "unit": "words"}


def test_the_toy_tools_fields_are_its_own_and_checked(toy_server: LiveServer) -> None:
    tools = [{"type": "word_count", "unit": "characters"}]
    with toy_server.http() as http:
        done = http.post("/v1beta/interactions", json={"model": MODEL, "input": counted("abc de"), "tools": tools})
        assert done.status_code == 200, done.text
        assert done.json()["steps"][1]["result"] == [{"count": 6, "unit": "characters"}]
        pages = [{"type": "word_count", "unit": "pages"}]
        bad = http.post("/v1beta/interactions", json={"model": MODEL, "input": "hi", "tools": pages})
        assert bad.status_code == 400 and "unit" in bad.json()["error"]["message"]
        twice = http.post("/v1beta/interactions", json={"model": MODEL, "input": "hi",
                                                         "tools": [{"type": "word_count"}] * 2})  # fmt: skip
        assert twice.status_code == 400 and "listed twice" in twice.json()["error"]["message"]
        clash = {"type": "function", "name": "word_count", "parameters": {"type": "object"}}
        named = http.post("/v1beta/interactions", json={"model": MODEL, "input": "hi",
                                                         "tools": [{"type": "word_count"}, clash]})  # fmt: skip
        assert named.status_code == 400 and "name of a server tool" in named.json()["error"]["message"]


def test_a_chained_turn_carries_the_toy_steps_to_the_model(toy_server: LiveServer) -> None:
    with toy_server.http() as http:
        first = http.post("/v1beta/interactions", json={"model": MODEL, "input": counted("a b c d"),
                                                        "tools": [{"type": "word_count"}]}).json()  # fmt: skip
        echo = script([{"text_from_result": "{result}"}])
        second = http.post("/v1beta/interactions", json={"model": MODEL, "input": echo,
                                                         "previous_interaction_id": first["id"]})  # fmt: skip
        assert second.status_code == 200, second.text
        assert json.loads(second.json()["steps"][-1]["content"][0]["text"]) == {"count": 4, "unit": "words"}


RENDER = """
import json, sys
from openinteractions.backends.llamacpp.prompt import chat_messages as llama_messages
from openinteractions.backends.openai.options import OpenAIOptions
from openinteractions.backends.openai.request import chat_messages as openai_messages
from openinteractions.backends.base import GenerationRequest
from pydantic import TypeAdapter
from openinteractions.schema.steps import Step

history = TypeAdapter(list[Step]).validate_python(json.loads(sys.argv[1]))
openai = openai_messages(GenerationRequest(model="m", history=history), OpenAIOptions(base_urls=["http://127.0.0.1:1/v1"]))
print(json.dumps({"llama": llama_messages(history, []), "openai": openai}))
"""


def test_both_backends_render_the_toy_steps(package_with_toy: Path) -> None:
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "How many words?"}]},
        {"type": "word_count_call", "id": "c1", "arguments": {"text": "x y"}},
        {"type": "word_count_result", "call_id": "c1", "result": [{"count": 2, "unit": "words"}]},
    ]
    env = {**os.environ, "PYTHONPATH": str(package_with_toy)}
    out = subprocess.run([sys.executable, "-c", RENDER, json.dumps(history)], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    rendered = json.loads(out.stdout)
    assert rendered["llama"][1] == {
        "role": "assistant",
        "content": '[{"name": "word_count", "arguments": {"text": "x y"}}]',
    }
    assert rendered["llama"][2] == {"role": "user", "content": 'word_count returned:\n{"count": 2, "unit": "words"}'}
    call = rendered["openai"][1]["tool_calls"][0]
    assert (call["id"], call["function"]) == ("c1", {"name": "word_count", "arguments": '{"text": "x y"}'})
    assert rendered["openai"][2] == {"role": "tool", "tool_call_id": "c1", "content": '{"count": 2, "unit": "words"}'}


def test_the_package_itself_knows_no_toy_tool() -> None:
    """The copy, not the package, has the toy tool: a request for it here is a 400 naming the type."""
    from openinteractions.schema.requests import CreateInteractionRequest

    with pytest.raises(ValueError, match="word_count"):
        CreateInteractionRequest.model_validate({"model": MODEL, "input": "hi", "tools": [{"type": "word_count"}]})


def test_the_toy_tools_settings_are_its_own_section(package_with_toy: Path, tmp_path: Path) -> None:
    """A tool's module may declare its settings: ``[tools.word_count]`` is checked against them, and the
    configuration reference lists it."""
    env = {"PYTHONPATH": str(package_with_toy)}
    sections: dict[str, dict[str, Any]] = {
        f"models.{MODEL}": {"backend": "scripted", "inline": True},
        "tools.word_count": {"unit": "characters"},
    }
    (tmp_path / "chars").mkdir()
    server = LiveServer(tmp_path / "chars", sections, env=env).start()
    try:
        with server.http() as http:
            body = {"model": MODEL, "input": counted("abc de"), "tools": [{"type": "word_count"}]}
            done = http.post("/v1beta/interactions", json=body).json()
    finally:
        server.stop()
    assert done["steps"][1]["result"] == [{"count": 6, "unit": "characters"}]
    (tmp_path / "typo").mkdir()
    typo = {**sections, "tools.word_count": {"units": "characters"}}
    with pytest.raises(RuntimeError, match="units"):
        LiveServer(tmp_path / "typo", typo, env=env).start()
    full_env = {**os.environ, **env}
    reference = subprocess.run([sys.executable, "-m", "openinteractions.config_reference"], env=full_env,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "## `[tools.word_count]`" in reference
    assert "| `unit` | `Literal['words', 'characters']` | `'words'` | what a request that names no unit counts |" in (
        reference
    )
