"""The seam between a run and what it executes: a ``Program`` gets the run's parts and produces its steps.

A model interaction runs the tool loop (``engine/toolloop.py``, driven by the run itself); an agent
interaction runs its agent's program (``engine/research.py``). The run owns everything around it: the
announcement, the terminal event, usage, persistence, cancellation and timeouts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

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


class Program(Protocol):
    async def run(self, run: ProgramRun) -> None:
        """Emit the interaction's steps through ``run.writer``; raise ``BudgetExceeded`` when a budget runs out."""
        ...
