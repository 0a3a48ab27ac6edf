"""The ``code_execution`` server tool: Python that the model writes, run in the sandbox (tools/sandbox.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..schema.base import WireModel
from ..schema.content import Content
from ..schema.functions import FunctionTool
from .kind import BaseServerTool, Outcome, ServerToolKind, ToolCallStep, ToolDeclaration, ToolResultStep, Unavailable

if TYPE_CHECKING:
    from ..config import CodeExecutionSettings, ToolsSettings
    from .sandbox import Execution, Sandbox

TIMED_OUT = "the time budget for server tools ran out"


class CodeExecutionTool(ToolDeclaration):
    type: Literal["code_execution"] = "code_execution"


class CodeExecutionArguments(WireModel):
    code: str | None = None
    language: Literal["python", "bash"] | None = None


class CodeExecutionCallStep(ToolCallStep):
    type: Literal["code_execution_call"] = "code_execution_call"
    id: str
    arguments: CodeExecutionArguments
    signature: str | None = None


class CodeExecutionResultStep(ToolResultStep):
    type: Literal["code_execution_result"] = "code_execution_result"
    call_id: str
    result: list[Content] | str
    is_error: bool | None = None
    signature: str | None = None


class CodeExecutionCallDelta(WireModel):
    type: Literal["code_execution_call"] = "code_execution_call"
    arguments: CodeExecutionArguments
    signature: str | None = None


class CodeExecutionResultDelta(WireModel):
    type: Literal["code_execution_result"] = "code_execution_result"
    result: list[Content] | str
    is_error: bool | None = None
    signature: str | None = None


class CodeExecution(BaseServerTool):
    name = step = "code_execution"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def declaration(self) -> FunctionTool:
        return FunctionTool(
            name=self.name,
            description="Run Python 3 code and get its printed output. Use print() to show results.",
            parameters={
                "type": "object",
                "properties": {"code": {"type": "string", "maxLength": 4000}},
                "required": ["code"],
            },
        )

    def call_view(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return {**arguments, "language": arguments.get("language") or "python"}, {}

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        return self.outcome(await self.sandbox.run_python(str(arguments.get("code") or "")))

    @staticmethod
    def outcome(execution: Execution) -> Outcome:
        """What the model sees of an execution: its output, and why it failed if it did."""
        text = execution.stdout
        if execution.stderr:
            text += ("\n" if text else "") + execution.stderr
        if execution.problem:
            text += ("\n" if text else "") + f"[{execution.problem}]"
        elif execution.exit_code:
            text += ("\n" if text else "") + f"[exit status {execution.exit_code}]"
        return Outcome(text, is_error=not execution.ok)


class CodeProvision:
    """The sandbox of this server (checked once as the server starts); it also draws research charts."""

    def __init__(self, settings: CodeExecutionSettings, execution: CodeExecution) -> None:
        self.settings = settings
        self.execution = execution
        self.problem: str | None = None
        self._chart_problem: str | None = None  # "" once the sandbox was seen to draw charts

    def for_request(self, tool: CodeExecutionTool, owner: str) -> CodeExecution:
        return self.execution

    async def chart_problem(self) -> str | None:
        """Why the sandbox cannot draw charts, or None: it needs matplotlib in the sandbox's Python (asked of
        the sandbox once)."""
        if self._chart_problem is None:
            execution = await self.execution.sandbox.run_python("import matplotlib")
            python = self.settings.python
            found = f"matplotlib does not import in the sandbox's {python} (Debian: apt-get install python3-matplotlib)"
            self._chart_problem = "" if execution.ok else found
        return self._chart_problem or None

    def close(self) -> None:
        pass


class CodeExecutionKind(ServerToolKind):
    type = "code_execution"
    request = CodeExecutionTool
    call_step = CodeExecutionCallStep
    result_step = CodeExecutionResultStep
    call_delta = CodeExecutionCallDelta
    result_delta = CodeExecutionResultDelta
    empty_result = ""
    timeout_result = TIMED_OUT

    def provision(self, settings: ToolsSettings, data_dir: Path) -> CodeProvision | Unavailable:
        from .sandbox import Sandbox, SandboxLimits, SandboxUnavailable

        code = settings.code_execution
        if not code.enabled:
            return Unavailable("disabled by tools.code_execution.enabled = false")
        limits = SandboxLimits(
            code.wall_seconds, code.cpu_seconds, code.memory_mb, code.max_processes, code.max_file_mb,
            code.max_output_bytes, code.disk_mb, code.max_open_files, code.sandbox_memory_mb,
        )  # fmt: skip
        sandbox = Sandbox(limits, python=code.python, user=code.user, concurrency=code.concurrency)
        try:
            sandbox.check()
        except SandboxUnavailable as exc:
            return Unavailable(str(exc))
        return CodeProvision(code, CodeExecution(sandbox))

    def call_function(self, step: CodeExecutionCallStep) -> tuple[str, dict[str, Any]]:
        return self.type, step.arguments.model_dump(exclude_none=True, exclude={"language"})

    def result_text(self, step: CodeExecutionResultStep) -> str:
        if isinstance(step.result, str):
            return step.result
        return super().result_text(step)


KIND = CodeExecutionKind()
