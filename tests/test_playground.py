"""The web playground at ``/`` in headless Chromium (Debian's, driven by Playwright), against a live server with
scripted models behind an API key: an answer streams in step by step, a function call is answered through the
page, a thought summary opens, a stored conversation reopens (and is deleted), a background run is re-attached
after the page was left, and a deep-research run shows its research and cited report. Screenshots of each are
saved in the test's tmp dir (the path is printed)."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from live import FIXTURES, LiveServer

sync_api = pytest.importorskip("playwright.sync_api")
Page = sync_api.Page
expect = sync_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's Chromium as root in a container, with no network beyond loopback: no sandbox, no background traffic.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
KEY = "playground-key-0001"
AGENT = "deep-research-preview-04-2026"
REPORT = "# Europe's highest peak\n\nMount Elbrus is the highest peak in Europe [1].\n"
ELBRUS = "Mount Elbrus is the highest and most prominent peak in Russia and in Europe."
NOTE = {"source": 1, "claim": "Elbrus is the highest peak in Europe", "quote": ELBRUS}
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


def rule(events: list[dict[str, Any]], **when: Any) -> dict[str, Any]:
    return {"when": when, "events": events}


def answer(value: Any) -> list[dict[str, Any]]:
    return [{"text": json.dumps(value)}]


COUNTING = [{"thought": "The user wants **counting**.\n\nI will count to three, slowly."}, {"text": "One. "},
            {"sleep_ms": 120}, {"text": "Two. "}, {"sleep_ms": 120}, {"text": "Three. "}, {"sleep_ms": 120},
            {"text": "**Done.**"}]  # fmt: skip
SCRIPT = {
    "rules": [
        rule(COUNTING, input_contains="count"),
        rule([{"text": "It is sunny in Paris."}], last_step="function_result"),
        rule([{"call": {"name": "get_weather", "arguments": {"city": "Paris"}, "chunks": 3}}], tool="get_weather"),
        rule([{"text": "The page says: "}, {"text_from_result": "{result}"}], last_step="url_context_result"),
        rule([{"text": "I remember: you said banana."}], input_contains="what did I say", turn=2),
        rule([{"text": "Starting a long answer... "}, {"hang": True}], input_contains="forever"),
        rule([{"text": "Hello from the scripted model."}]),
    ]
}
RESEARCH = {
    "rules": [
        rule(answer({"questions": ["Mount Elbrus height"]}), system_contains="You plan research"),
        rule(answer({"notes": [NOTE]}), system_contains="You take research notes"),
        rule(answer({"questions": []}), system_contains="You review research notes"),
        rule([{"text": REPORT}], system_contains="You write the research report"),
    ]
}


class Gate:
    """A page on loopback that answers only once the test opens the gate: a run reading it (url_context) stays
    in progress for exactly as long as the test needs."""

    def __init__(self) -> None:
        self.open = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.open.wait(30)
                body = b"<html><body><article><p>The gate opened at the secret word walnut.</p></article></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gated"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("playground")
    (workdir / "script.json").write_text(json.dumps(SCRIPT))
    (workdir / "research.json").write_text(json.dumps(RESEARCH))
    live = LiveServer(workdir, {
        "auth": {"api_keys": [KEY]},
        "models.m": {"backend": "scripted", "script": workdir / "script.json"},
        "models.thinker": {"backend": "scripted", "script": workdir / "research.json"},
        f"agents.{AGENT}": {"model": "thinker", "reads_per_search": 1},
        "tools.code_execution": {"enabled": False},
        "tools.url_context": {"allow_networks": ["127.0.0.1/32"]},
    })  # fmt: skip
    live.index(FIXTURES / "corpus")
    yield live.start()
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/install --test installs it as root)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, server: LiveServer, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(server.url + "/")
    page.fill("#api-key", KEY)
    page.click("#key-form button")
    expect(page.locator("#model option[value=m]")).to_have_count(1)
    yield page
    context.close()
    assert not problems, problems  # no uncaught error in the page's scripts


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def choose_model(page: Page, name: str = "m") -> None:
    page.check("#target-model")
    page.select_option("#model", name)


def ask(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")


def last_turn(page: Page) -> Any:
    """The turn shown last now (a plain ``.last`` locator would follow later turns)."""
    turns = page.locator(".turn")
    return turns.nth(turns.count() - 1)


def test_the_page_is_served_without_a_key_but_the_api_needs_one(server: LiveServer) -> None:
    with server.http() as http:
        index = http.get("/")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        assert "script-src 'self'" in index.headers["content-security-policy"]
        script = http.get("/playground/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert http.get("/playground/missing.js").status_code == 404
        assert http.get("/v1beta/models").status_code == 401
        # a page of another site may not load it (the server's Origin/Sec-Fetch-Site guard applies here too)
        assert http.get("/", headers={"sec-fetch-site": "cross-site"}).status_code == 403


def test_without_a_key_the_page_asks_for_one(browser: Any, server: LiveServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#notice")).to_contain_text("API key")
    page.fill("#api-key", "wrong-key")
    page.click("#key-form button")
    expect(page.locator("#notice")).to_contain_text("not valid")
    context.close()


def test_a_streamed_answer_appears_step_by_step_and_its_thought_expands(page: Page, tmp_path: Path) -> None:
    choose_model(page)
    # every text the answer's step shows, as the page changes it
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(() => {
            const out = document.querySelector('.turn:last-of-type .step.model_output');
            if (out && window.seen.at(-1) !== out.textContent) window.seen.push(out.textContent);
        }).observe(document.getElementById('timeline'), {subtree: true, childList: true, characterData: true});
    }""")
    ask(page, "count to three")
    turn = last_turn(page)
    expect(turn.locator(".status")).to_have_text("completed")
    output = turn.locator(".step.model_output")
    expect(output).to_have_text("One. Two. Three. Done.")
    expect(output.locator("strong")).to_have_text("Done.")  # rendered as markdown
    seen = page.evaluate("window.seen")
    partial = [text for text in seen if text and "Done." not in text]
    assert len(partial) >= 2 and partial[0].startswith("One."), seen  # shown while it was written
    expect(turn.locator(".timing")).to_contain_text("first token")
    expect(turn.locator(".usage")).to_contain_text("out")

    thought = turn.locator(".step.thought")
    expect(thought.locator("summary")).to_contain_text("The user wants counting")
    body = thought.locator(".summary")
    expect(body).to_be_hidden()  # collapsed until asked
    thought.locator("summary").click()
    expect(body).to_be_visible()
    expect(body.locator("strong")).to_have_text("counting")
    expect(body).to_contain_text("I will count to three, slowly.")
    shot(page, tmp_path, "streamed-answer")


def test_a_function_call_is_answered_through_the_page(page: Page, server: LiveServer, tmp_path: Path) -> None:
    choose_model(page)
    page.fill("#functions", json.dumps([WEATHER]))
    ask(page, "What is the weather in Paris?")
    turn = last_turn(page)
    expect(turn.locator(".status")).to_have_text("requires action")
    call = turn.locator(".step.function_call")
    expect(call.locator(".head b")).to_have_text("get_weather")
    assert json.loads(call.locator(".args").text_content() or "") == {"city": "Paris"}
    form = turn.locator("form.requires-action")
    form.locator("textarea").fill('{"weather": "sunny", "celsius": 21}')
    shot(page, tmp_path, "function-call")
    form.locator("button").click()

    answer_turn = last_turn(page)
    expect(answer_turn.locator(".asked .step.function_result")).to_contain_text('"celsius": 21')
    expect(answer_turn.locator(".status")).to_have_text("completed")
    expect(answer_turn.locator(".step.model_output")).to_have_text("It is sunny in Paris.")
    second = answer_turn.get_attribute("data-id")
    with server.http(headers={"x-goog-api-key": KEY}) as http:
        stored = http.get(f"/v1beta/interactions/{second}").json()
    first = turn.get_attribute("data-id")
    assert stored["previous_interaction_id"] == first  # the results continued the first turn


def test_a_stored_conversation_reopens_continues_and_is_deleted(page: Page, server: LiveServer) -> None:
    choose_model(page)
    ask(page, "remember banana")
    expect(last_turn(page).locator(".status")).to_have_text("completed")
    ask(page, "what did I say?")
    expect(last_turn(page).locator(".step.model_output")).to_have_text("I remember: you said banana.")
    ids = page.locator(".turn").evaluate_all("turns => turns.map(t => t.dataset.id)")

    page.reload()  # a new page: it knows the conversation only from localStorage, and reads it from the server
    expect(page.locator(".turn")).to_have_count(0)
    entry = page.locator("#history li", has_text="remember banana")
    expect(entry).to_contain_text("2 turn(s)")
    entry.locator(".open").click()
    turns = page.locator(".turn")
    expect(turns).to_have_count(2)
    expect(turns.first.locator(".asked")).to_have_text("remember banana")
    expect(turns.first.locator(".step.model_output")).to_have_text("Hello from the scripted model.")
    expect(turns.last.locator(".step.model_output")).to_have_text("I remember: you said banana.")
    expect(turns.last.locator(".status")).to_have_text("completed")
    expect(page.locator("#conversation-label")).to_contain_text(ids[1])

    entry.locator(".delete").click()
    expect(entry).to_have_count(0)
    with server.http(headers={"x-goog-api-key": KEY}) as http:
        assert [http.get(f"/v1beta/interactions/{i}").status_code for i in ids] == [404, 404]


def test_a_background_run_is_reattached(page: Page, tmp_path: Path) -> None:
    gate = Gate()
    try:
        choose_model(page)
        page.check("#tool-url_context")
        page.check("#background")
        ask(page, f"Read {gate.url} for me.")
        turn = last_turn(page)
        expect(turn.locator(".step.tool_call")).to_contain_text(gate.url)
        expect(turn.locator(".status")).to_have_text("in progress")

        page.reload()  # the page is gone; the background run goes on
        page.locator("#history li", has_text="for me").locator(".open").click()
        turn = last_turn(page)
        expect(turn.locator(".step.tool_call")).to_contain_text(gate.url)  # replayed from the start
        expect(turn.locator(".status")).to_have_text("in progress")
        turn.locator("button.detach").click()
        follows: list[str] = []
        page.on("request", lambda request: follows.append(request.url) if "stream=true" in request.url else None)
        turn.locator("button.reattach").click()
        expect(turn.locator("button.detach")).to_be_visible()
        assert len(follows) == 1 and re.search(r"last_event_id=\d+", follows[0]), follows

        gate.open.set()  # the run goes on, and the page sees it live
        expect(turn.locator(".status")).to_have_text("completed")
        expect(turn.locator(".step.model_output")).to_contain_text("walnut")
        expect(turn.locator(".step.tool_call")).to_have_count(1)  # nothing shown twice
        expect(turn.locator(".step.tool_result")).to_have_count(1)
        shot(page, tmp_path, "reattached")
    finally:
        gate.close()


def test_a_deep_research_run_shows_its_progress_and_a_cited_report(page: Page, tmp_path: Path) -> None:
    page.check("#target-agent")
    page.fill("#agent", AGENT)
    ask(page, "Which is the highest peak in Europe?")
    turn = last_turn(page)
    expect(turn.locator(".target")).to_have_text(f"agent {AGENT}")
    expect(turn.locator(".status")).to_have_text("completed")
    expect(turn.locator(".step.thought").first).to_be_visible()
    expect(turn.locator(".step.tool_call", has_text="google_search")).to_have_count(1)
    report = turn.locator(".step.model_output").last
    expect(report.locator("h1")).to_have_text("Europe's highest peak")
    expect(report.locator(".citations li")).to_have_count(1)
    shot(page, tmp_path, "deep-research")


def test_settings_are_checked_then_sent(page: Page) -> None:
    choose_model(page)
    page.fill("#generation-config", "{not json")
    ask(page, "hello")
    expect(page.locator("#notice")).to_contain_text("generation_config is not valid JSON")
    expect(page.locator(".turn")).to_have_count(0)
    page.fill("#generation-config", '{"max_output_tokens": 3}')
    ask(page, "count to three")
    turn = last_turn(page)
    expect(turn.locator(".status")).to_have_text("incomplete")  # the model stopped at 3 words
    expect(turn.locator(".step.model_output")).to_have_text("One. Two. Three.")
    page.check("#tool-code_execution")  # this server cannot run it: refused before the run, and the page says why
    ask(page, "hello")
    expect(last_turn(page).locator(".errors")).to_contain_text("code_execution")


def test_stop_cancels_a_running_answer(page: Page) -> None:
    choose_model(page)
    ask(page, "talk forever")
    turn = last_turn(page)
    expect(turn.locator(".step.model_output")).to_have_text("Starting a long answer...")
    expect(turn.locator(".status")).to_have_text("in progress")
    turn.locator("button.stop").click()
    expect(turn.locator(".status")).to_have_text("cancelled")
    expect(turn.locator("button.stop")).to_have_count(0)


# A 1x1 PNG and a WAV of silence, as a model's image and audio deltas would carry them.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQgAAAAAAAAAAAAAAA=="


def test_media_citations_and_unsafe_markdown_render(page: Page) -> None:
    """The scripted backend writes no images or audio: these events are handed to the page's own timeline."""
    page.evaluate(
        """async ([png, wav]) => {
        const { Turn } = await import('/playground/turn.js');
        const turn = new Turn({ asked: 'draw', target: 'model x' });
        document.getElementById('timeline').append(turn.root);
        const text = 'See <img src=x onerror="window.pwned=1"> [a link](javascript:window.pwned=2) **here**';
        for (const event of [
            { event_type: 'interaction.created', interaction: { id: 'v1_media', status: 'in_progress' } },
            { event_type: 'step.start', index: 0, step: { type: 'model_output' } },
            { event_type: 'step.delta', index: 0, delta: { type: 'text', text } },
            { event_type: 'step.delta', index: 0, delta: { type: 'text_annotation_delta', annotations: [
                { type: 'url_citation', url: 'https://example.org/a', title: 'Source A', start_index: 0,
                  end_index: 3 }] } },
            { event_type: 'step.delta', index: 0, delta: { type: 'image', mime_type: 'image/png', data: png } },
            { event_type: 'step.delta', index: 0, delta: { type: 'audio', mime_type: 'audio/wav', data: wav } },
            { event_type: 'step.stop', index: 0 },
            { event_type: 'interaction.completed', interaction: { id: 'v1_media', status: 'completed' } },
        ]) turn.apply(event);
    }""",
        [PNG, WAV],
    )
    turn = page.locator(".turn[data-id=v1_media]")
    expect(turn.locator(".status")).to_have_text("completed")
    image = turn.locator("img.block.image")
    expect(image).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    page.wait_for_function("() => document.querySelector('img.block.image').naturalWidth === 1")  # it decoded
    expect(turn.locator("audio.block.audio")).to_have_attribute("src", re.compile("^data:audio/wav;base64,"))
    expect(turn.locator(".citations a")).to_have_attribute("href", "https://example.org/a")
    expect(turn.locator(".md strong")).to_have_text("here")
    expect(turn.locator(".md [onerror]")).to_have_count(0)
    assert turn.locator(".md a").get_attribute("href") in (None, "")  # the javascript: link lost its href
    assert page.evaluate("window.pwned") is None
