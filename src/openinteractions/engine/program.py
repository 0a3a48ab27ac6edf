"""The seam between a run and what it executes: a ``Program`` gets the run's parts and produces its steps.

A model interaction runs the tool loop (``engine/toolloop.py``, driven by the run itself); an agent
interaction runs its agent's program (``engine/research.py``). The run owns everything around it: the
announcement, the terminal event, usage, persistence, cancellation and timeouts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..backends.base import Backend, GenerationRequest, UsageReport
from ..schema.steps import Step
from .steps import StepWriter


@dataclass
class ProgramRun:
    """What a program gets from the run that drives it."""

    backend: Backend
    generation: GenerationRequest  # the run's request: model, history, thought_text
    writer: StepWriter
    inputs: list[Step]
    ready: Callable[[], Awaitable[None]]  # awaited before the first step (the row must be stored first)
    count: Callable[[UsageReport], None]  # every model call's usage
    checkpoint: Callable[[], None]  # between phases: a stored run keeps its usage so far
    spent: int = 0  # tokens counted before a crash (a run taken over)
    elapsed: float = 0.0  # seconds since the interaction was created (a run taken over has used some)


class Program(Protocol):
    outcome: str | None  # set by run(): "requires_action" when it waits for the user (a plan to approve)

    def take_over(self, logged: list[dict[str, Any] | None], cut: str | None, backend: Backend) -> bool:
        """A run taken over after a crash: ``logged`` is every step a previous server logged (as folded), the
        last one still open if ``cut`` names its type. The program's state is a fold of these steps. True: it
        goes on with the cut step (left open); False: the run closes it and marks the restart."""
        ...

    async def run(self, run: ProgramRun) -> None:
        """Emit the interaction's steps through ``run.writer``; raise ``BudgetExceeded`` when a budget runs out."""
        ...
