"""The deep-research program: plan → search → read → notes (→ another round) → a report with citations.

Every phase is a ``thought`` step whose summary says what it does; searches and reads are the server tools'
call/result steps; the report streams as ``model_output``. With ``visualization: "auto"`` a series of numbers
from the notes is drawn in the ``code_execution`` sandbox (research_chart) and the chart ends the report as an
``image``. The model (any served backend) is asked for the plan,
the notes and the follow-up questions as JSON (a JSON schema where the backend enforces structured output), and
for the report as markdown with ``[n]`` markers. A note is kept only if its quote is found in the text of the
document it names, a document read in this run; a marker becomes a ``url_citation`` only if it names such a note's
source. Rounds, searches and reads bound the research (the report is written from what was gathered); tokens and
time running out end the run ``budget_exceeded``. The program's state is a fold of its log (``research_log``):
a run taken over after a crash goes on from the phase it stopped in.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from contextlib import aclosing
from dataclasses import asdict
from typing import Any

from ..backends.base import (
    Backend,
    GenerationRequest,
    Resume,
    TextChunk,
    ThoughtChunk,
    ToolCall,
    ToolResult,
    UsageReport,
    continues,
)
from ..config import AgentSettings
from ..ids import new_call_id
from ..schema.content import TextContent, UrlCitation
from ..schema.deltas import ImageDelta
from ..schema.generation import TextResponseFormat
from ..schema.steps import UserInputStep
from ..tools.code_execution import CodeExecution
from ..tools.google_search import GoogleSearch
from ..tools.reader import DocumentReader
from .program import ProgramRun
from .research_chart import CHART_FILE, CHART_SCHEMA, CHARTER, Chart, checked_chart, has_numbers, listed, plotting_code
from .research_log import Diverged, Past, pending_plan, sealed
from .research_notes import NOTES_SCHEMA, Note, checked
from .run import CannotContinue
from .toolloop import BudgetExceeded

PLANNER = "You plan research. Split the user's request into short, self-contained search questions."
NOTE_TAKER = (
    "You take research notes. From the numbered documents, write the facts that answer the question. For each "
    "note give the document's number as 'source' and copy the sentence that supports it, word for word, as 'quote'."
)
PLAN_EDITOR = (
    "You agree a research plan with the user. The user was shown the plan and replied. Answer the plan's questions "
    "as the user wants them (changed as the reply asks, else as they are), and whether the reply approves the plan "
    "as it now stands ('approved': false if the reply asks for changes)."
)
REVIEWER = "You review research notes. List the questions still unanswered, as search questions; none if enough."
REPORTER = (
    "You write the research report in markdown: a title, a summary, then sections. Support every claim with the "
    "number of its source in brackets, like [1]. Use only the notes given."
)


def _questions_schema(maximum: int, minimum: int) -> dict[str, Any]:
    items = {"type": "string", "maxLength": 200}
    questions = {"type": "array", "items": items, "minItems": minimum, "maxItems": maximum}
    return {"type": "object", "properties": {"questions": questions}, "required": ["questions"]}


_AGREED_SCHEMA = {
    "type": "object",
    "properties": {**_questions_schema(8, 1)["properties"], "approved": {"type": "boolean"}},
    "required": ["questions", "approved"],
}
_MARKER = re.compile(r"\[(\d{1,3})\]")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ResearchProgram:
    def __init__(
        self,
        settings: AgentSettings,
        search: GoogleSearch | None,
        reader: DocumentReader,
        collaborative: bool = False,
        charts: CodeExecution | None = None,
    ) -> None:
        self.settings = settings
        self.collaborative = collaborative  # agent_config.collaborative_planning: stop after the plan for the user
        self.charts = charts  # agent_config.visualization "auto": the sandbox that draws the report's chart
        self._chart_png: bytes | None = None
        self.outcome: str | None = None  # requires_action: the plan waits for the user's reply
        self.search = search
        self.reader = reader
        self.notes: list[Note] = []
        self.read: set[str] = set()
        self.searched: list[str] = []
        self.tokens = 0
        self._logged: list[dict[str, Any]] = []
        self._past = Past([], lambda step: "")
        self._cut_report: str | None = None  # a report cut off by a crash, which the backend goes on with

    def take_over(self, logged: list[dict[str, Any] | None], cut: str | None, backend: Backend) -> bool:
        steps = [s for s in (logged[:-1] if cut is not None else logged) if s is not None]
        self._logged = steps
        if cut != "model_output":
            return cut is None
        blocks = (logged[-1] or {}).get("content") or []
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        if not continues(backend.capabilities, Resume(steps=[], open_step="model_output", prefill=text)):
            return False
        self._cut_report = text
        return True

    async def run(self, run: ProgramRun) -> None:
        self._run = run
        self.tokens = run.spent
        self._past = Past(self._logged, run.generation.thought_text)
        try:
            async with asyncio.timeout(max(0.0, self.settings.time_budget_seconds - run.elapsed)) as budget:
                await self._research()
        except TimeoutError:
            if budget.expired():
                raise BudgetExceeded(f"the agent used up its {self.settings.time_budget_seconds:g} s") from None
            raise
        except Diverged as exc:
            raise CannotContinue(f"the agent's log cannot be continued: {exc}") from None

    async def _research(self) -> None:
        question = _text(self._run)
        await self._run.ready()
        proposed = pending_plan(self._run.generation, self._run.generation.thought_text)
        if proposed is not None:  # this turn answers a plan proposed in the previous one
            question, questions, approved = await self._agree(proposed, question)
        else:
            questions, approved = await self._plan(question), not self.collaborative
        if not approved:
            await self._propose(question, questions)
            return
        for number in range(self.settings.max_rounds):
            for q in questions:
                if len(self.searched) >= self.settings.max_searches:
                    break
                await self._investigate(q)
            if number + 1 == self.settings.max_rounds or len(self.searched) >= self.settings.max_searches:
                break
            questions = await self._review(question)
            if not questions:
                break
        await self._chart(question)
        await self._report(question)

    # ---- phases ---------------------------------------------------------------------------------------

    async def _agree(self, proposed: dict[str, Any], reply: str) -> tuple[str, list[str], bool]:
        """The user's reply to a proposed plan: the plan as agreed, and whether it is approved (always, when this
        turn does not ask for collaborative planning: the reply is applied and the research goes on)."""
        question = str(proposed.get("request") or reply)
        recalled = self._past.recall("agree")
        if recalled is None:
            listed = "\n".join(f"{i}. {q}" for i, q in enumerate(_strings(proposed.get("questions")), 1))
            prompt = f"Request: {question}\n\nPlan:\n{listed}\n\nThe user's reply: {reply}\n\nAnswer with JSON."
            agreed = _json(await self._ask(PLAN_EDITOR, prompt, _AGREED_SCHEMA))
            limit = self.settings.max_questions
            questions = _strings(agreed.get("questions"))[:limit] or _strings(proposed.get("questions"))
            approved = agreed.get("approved") is True or not self.collaborative
            listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
            heading = "The plan is agreed" if approved else "Revising the plan"
            recalled = {"phase": "agree", "questions": questions, "approved": approved}
            await self._think(heading, f"I will look into:\n{listed}", recalled)
        return question, _strings(recalled.get("questions")), recalled.get("approved") is True

    async def _propose(self, question: str, questions: list[str]) -> None:
        """Collaborative planning: the plan is the answer, and the run waits for the user's reply."""
        recalled = self._past.recall("proposal")
        if recalled is None:
            await self._think("Waiting for the plan's approval", "The plan goes to the user.",
                              {"phase": "proposal", "request": question, "questions": questions})  # fmt: skip
        self.outcome = "requires_action"
        if self._past.report() is not None:
            return
        listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
        text = (f"Here is my research plan:\n\n{listed}\n\nReply to approve it, or say what to change; "
                "the research starts once the plan is approved.")  # fmt: skip
        cut = self._cut_report or ""
        await self._run.writer.text(text[len(cut) :] if text.startswith(cut) else text)

    async def _plan(self, question: str) -> list[str]:
        recalled = self._past.recall("plan")
        if recalled is not None:
            return _strings(recalled.get("questions"))
        limit = self.settings.max_questions
        answer = await self._ask(PLANNER, f"Request: {question}\n\nAnswer with up to {limit} questions as JSON.",
                                 _questions_schema(limit, 1))  # fmt: skip
        questions = _strings(_json(answer).get("questions"))[:limit] or [question]
        listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
        await self._think("Planning the research", f"To answer this, I will look into:\n{listed}",
                          {"phase": "plan", "questions": questions})  # fmt: skip
        return questions

    async def _review(self, question: str) -> list[str]:
        recalled = self._past.recall("review")
        if recalled is not None:
            return _strings(recalled.get("questions"))
        if self._past:  # logged steps follow without a review thought: it found nothing open
            return []
        limit = self.settings.max_questions
        prompt = f"Request: {question}\n\nNotes so far:\n{self._listed_notes()}\n\nAnswer with JSON."
        questions = _strings(_json(await self._ask(REVIEWER, prompt, _questions_schema(limit, 0))).get("questions"))
        questions = [q for q in questions if q not in self.searched][:limit]
        if questions:
            listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
            await self._think("Searching further", f"Some questions are still open:\n{listed}",
                              {"phase": "review", "questions": questions})  # fmt: skip
        return questions

    async def _investigate(self, question: str) -> None:
        if self.search is None:
            return
        self.searched.append(question)
        await self._say("search", "Searching", f"Searching: {question}")
        hits = await self._tool(self.search, {"queries": [question]})
        room = min(self.settings.reads_per_search, self.settings.max_reads - len(self.read))
        urls = [h["url"] for h in hits if isinstance(h, dict) and h.get("url") and h["url"] not in self.read][:room]
        if not urls:
            return
        titles = {h["url"]: h.get("title") or h["url"] for h in hits if isinstance(h, dict)}
        await self._say("read", "Reading", "Reading: " + "; ".join(titles[u] for u in urls))
        self.read.update(urls)
        pages = [p for p in await self._tool(self.reader, {"urls": urls}) if p.get("status") == "success"]
        if pages:
            await self._take_notes(question, pages)

    async def _take_notes(self, question: str, pages: list[dict[str, Any]]) -> None:
        recalled = self._past.recall("notes")
        if recalled is not None:
            self.notes.extend(Note(**n) for n in recalled.get("notes") or [])
            return
        documents = "\n\n".join(f"[{i}] {p.get('title')}\n{p.get('text')}" for i, p in enumerate(pages, 1))
        prompt = f"Question: {question}\n\nDocuments:\n{documents}\n\nAnswer with JSON."
        found = _json(await self._ask(NOTE_TAKER, prompt, NOTES_SCHEMA)).get("notes")
        kept = []
        for item in found if isinstance(found, list) else []:
            note = checked(item, pages)
            if note is not None:
                kept.append(note)
        self.notes.extend(kept)
        learned = "\n".join(f"- {n.claim}" for n in kept) or "Nothing in these documents answers it."
        await self._think("What I learned", learned, {"phase": "notes", "notes": [asdict(n) for n in kept]})

    async def _chart(self, question: str) -> None:
        """visualization "auto": a chart of a series of numbers from the notes, drawn in the sandbox; its PNG
        goes into the report."""
        if self.charts is None or not has_numbers(self.notes):
            return
        recalled = self._past.recall("chart")
        if recalled is None:
            prompt = f"Request: {question}\n\nNotes:\n{listed(self.notes)}\n\nAnswer with JSON."
            chart = checked_chart(_json(await self._ask(CHARTER, prompt, CHART_SCHEMA)), self.notes)
            body = (f"Drawing \"{chart.title}\" from {len(chart.values)} figures in the notes." if chart
                    else "The notes hold no series of figures to draw.")  # fmt: skip
            recalled = {"phase": "chart", "chart": chart.record() if chart else None}
            await self._think("Charting the figures", body, recalled)
        if recalled.get("chart"):
            self._chart_png = await self._draw(plotting_code(Chart.from_record(recalled["chart"])))

    async def _draw(self, code: str) -> bytes | None:
        """The chart's PNG, drawn by ``code`` in the sandbox under a ``code_execution`` call (drawn again,
        without steps, when the log holds the call's result: the log keeps the output, not the image)."""
        assert self.charts is not None
        logged = self._past.call(self.charts.name, {"code": code})
        if logged is None:
            self._past.expect_end("draws its chart")
            call_id = new_call_id()
            await self._run.writer.feed(ToolCall(tool=self.charts.name, id=call_id, arguments={"code": code}))
        execution = await self.charts.sandbox.run_python(code, (CHART_FILE,))
        if logged is None or logged[1] is None:
            outcome = CodeExecution.outcome(execution)
            await self._run.writer.feed(ToolResult(tool=self.charts.name, call_id=logged[0] if logged else call_id,
                                                   result=outcome.result, is_error=outcome.is_error))  # fmt: skip
        png = execution.files.get(CHART_FILE)
        return png if png is not None and png.startswith(PNG_SIGNATURE) else None

    async def _report(self, question: str) -> None:
        sources = list(dict.fromkeys(n.url for n in self.notes))
        await self._say("report", "Writing the report", f"Writing the report from {len(self.notes)} notes "
                                                        f"on {len(sources)} sources.")  # fmt: skip
        if self._past.report() is not None:
            return  # written and annotated before the crash
        self._past.expect_end("writes its report")
        prompt = f"Request: {question}\n\nNotes:\n{self._listed_notes()}"
        writer = self._run.writer
        parts = [self._cut_report] if self._cut_report is not None else []
        async for chunk in self._generate(REPORTER, prompt, None, self._cut_report):
            parts.append(chunk)
            await writer.text(chunk)
        if writer.open_step == "model_output":
            await writer.annotate(self._citations("".join(parts), sources))
        if self._chart_png is not None:
            await writer.media(ImageDelta(mime_type="image/png", data=base64.b64encode(self._chart_png).decode()))

    def _citations(self, text: str, sources: list[str]) -> list[UrlCitation]:
        """A ``url_citation`` per marker that names a source of a kept note, over its sentence (UTF-8 bytes)."""
        titles = {n.url: n.title for n in self.notes}
        citations = []
        for marker in _MARKER.finditer(text):
            number = int(marker.group(1))
            if not 1 <= number <= len(sources):
                continue  # names no source that was read and checked: no citation
            start = max(text.rfind(". ", 0, marker.start()) + 2, text.rfind("\n", 0, marker.start()) + 1, 0)
            url = sources[number - 1]
            citations.append(UrlCitation(url=url, title=titles[url], start_index=len(text[:start].encode()),
                                         end_index=len(text[: marker.end()].encode())))  # fmt: skip
        return citations

    def _listed_notes(self) -> str:
        sources = list(dict.fromkeys(n.url for n in self.notes))
        lines = [f'[{sources.index(n.url) + 1}] {n.claim} ("{n.quote}", {n.title})' for n in self.notes]
        return "\n".join(lines) or "(none)"

    # ---- the model, the tools, the stream --------------------------------------------------------------

    async def _say(self, phase: str, heading: str, body: str) -> None:
        """A phase's thought that the model does not decide: taken from the log if it is there."""
        if self._past.recall(phase) is None:
            await self._think(heading, body, {"phase": phase})

    async def _think(self, heading: str, body: str, record: dict[str, Any]) -> None:
        self._past.expect_end(f"thinks ({record['phase']})")
        await self._run.writer.feed(ThoughtChunk(f"**{heading}**\n\n{body}"))
        self._run.writer.conceal(sealed(record))
        await self._run.writer.close()

    async def _tool(self, tool: GoogleSearch | DocumentReader, arguments: dict[str, Any]) -> list[Any]:
        logged = self._past.call(tool.name, arguments)
        if logged is not None and logged[1] is not None:
            result = logged[1]
            return [] if result.get("is_error") else list(result.get("result") or [])
        if logged is not None:  # the tool was running when the server stopped: it runs again, under its call
            call_id = logged[0]
        else:
            self._past.expect_end(f"calls {tool.name}")
            call_id = new_call_id()
            await self._run.writer.feed(ToolCall(tool=tool.name, id=call_id, arguments=arguments))
        outcome = await tool.run(arguments)
        await self._run.writer.feed(
            ToolResult(tool=tool.name, call_id=call_id, result=outcome.result, is_error=outcome.is_error)
        )
        return [] if outcome.is_error else list(outcome.result)

    async def _ask(self, system: str, prompt: str, schema: dict[str, Any]) -> str:
        return "".join([chunk async for chunk in self._generate(system, prompt, schema)])

    async def _generate(
        self, system: str, prompt: str, schema: dict[str, Any] | None, so_far: str | None = None
    ) -> Any:
        """One model call: its text chunks (after ``so_far``, the text of a cut answer it goes on with). Its usage
        counts, and the token budget is checked after it."""
        self._past.expect_end("asks the model")
        run = self._run
        request = GenerationRequest(
            model=run.generation.model,
            history=[UserInputStep(content=[TextContent(text=prompt)])],
            system_instruction=system,
            thought_text=run.generation.thought_text,
        )
        if schema is not None and run.backend.capabilities.structured_output:
            request.response_format = TextResponseFormat(mime_type="application/json", schema=schema)
        if so_far is not None:
            request.resume = Resume(steps=[], open_step="model_output", prefill=so_far)
        request.plan = run.backend.prepare(request)
        async with aclosing(run.backend.generate(request)) as events:
            async for event in events:
                if isinstance(event, TextChunk):
                    yield event.text
                elif isinstance(event, UsageReport):
                    run.count(event)
                    self.tokens += event.input_tokens + event.output_tokens + event.thought_tokens
        run.checkpoint()  # a run taken over after a crash counts this call
        if self.tokens > self.settings.max_tokens:
            raise BudgetExceeded(f"the agent used {self.tokens} tokens, over its {self.settings.max_tokens}")


def _text(run: ProgramRun) -> str:
    blocks = [c for s in run.inputs if isinstance(s, UserInputStep) for c in s.content or []]
    return " ".join(c.text for c in blocks if c.type == "text").strip()


def _json(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer (a model without constrained decoding may wrap it in prose)."""
    start, end = text.find("{"), text.rfind("}")
    try:
        value = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    items = value if isinstance(value, list) else []
    return list(dict.fromkeys(s.strip() for s in items if isinstance(s, str) and s.strip()))
