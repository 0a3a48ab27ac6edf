"""A round cut off by a crash, as the text the model had written: what a continued generation is primed with.

The engine replays that text after the prompt (engine.py), so the model goes on from it; the answer's reader
(think tags, the calls' JSON) and the grammar take it in too, and only what follows is streamed. The text is
rebuilt from the round's logged steps: a model output's text as it was streamed; a finished thought's text
from its signature (``GenerationRequest.thought_text``), a cut one's from its summary if it was shown (else the
thought starts over, in the same step); the function calls as the JSON array the model writes, still open
(its original spacing is not logged: the calls are written as ``json.dumps`` writes them, which every calls
grammar admits).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from ...schema.steps import FunctionCallStep, ModelOutputStep, ThoughtStep
from ..base import Resume
from .text import ThinkSplitter


@dataclass
class SoFar:
    """What the cut round had produced. With prompted reasoning (a pass of its own before the answer) the pass
    is either still to be continued (``thinking``: its text so far) or over (``reasoning``: its whole text)."""

    answer: str = ""  # the answer as the model wrote it, think tags and calls' JSON included
    thinking: str | None = None
    reasoning: str | None = None


def so_far(resume: Resume | None, thought_text: Callable[[ThoughtStep], str], prompted: bool) -> SoFar | None:
    """None: the round had produced nothing, and starts as a fresh one."""
    if resume is None or (not resume.steps and resume.open_step is None):
        return None
    if prompted and resume.open_step == "thought":
        return SoFar(thinking=resume.prefill)
    answer: list[str] = []
    reasoning: list[str] = []
    calls: list[str] = []
    for step in resume.steps:
        if isinstance(step, ThoughtStep):
            text = thought_text(step)
            if prompted:
                reasoning.append(text)
            else:
                answer.append(ThinkSplitter.OPEN + text + ThinkSplitter.CLOSE)
        elif isinstance(step, ModelOutputStep):
            answer.append("".join(block.text for block in step.content or [] if block.type == "text"))
        elif isinstance(step, FunctionCallStep):
            calls.append(json.dumps({"name": step.name, "arguments": step.arguments}, ensure_ascii=False))
    if calls:
        answer.append("[" + ", ".join(calls))
    if resume.open_step == "model_output":
        answer.append(resume.prefill)
    elif resume.open_step == "thought":
        answer.append(ThinkSplitter.OPEN + resume.prefill)
    return SoFar(answer="".join(answer), reasoning="".join(reasoning) if prompted else None)
