"""google_search with image_search, end to end through google-genai: the local index finds image files by their
sidecar captions and the images that documents show by their alt text, captions and the text around them;
SearxNG's image results come from a fake SearxNG on loopback. One call runs one search type, shown as the call
step's ``search_type``; the model picks it when the request allows several."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

import netguard
from live import LiveServer
from openinteractions.tools.google_search import KIND as GOOGLE_SEARCH
from openinteractions.tools.google_search import (
    GoogleSearch,
    GoogleSearchResultItem,
    GoogleSearchResultStep,
    LocalSearch,
)
from openinteractions.tools.search_index import LocalIndex
from pages import json_api
from resuming import CrashingServer
from test_crash_gaps import crash_once
from test_tools import MODEL, call, client_for, guarded_server, no_packets_left, rounds, streamed

BOTH = [{"type": "google_search", "search_types": ["web_search", "image_search"]}]

STORY = """# The gladiator Marcus

Marcus trained at the ludus in Capua for three years before he was sent to Rome.

![A retiarius with his net and trident](retiarius.png "net fighter")

He fought in the Flavian amphitheatre before fifty thousand spectators.
"""

PAGE = """<html><head><title>Roman helmets</title></head><body>
<article><p>Gladiators wore heavy bronze helmets that covered the whole face.</p>
<figure><img src="helmet.jpg" alt="helmet"><figcaption>A murmillo helmet found at Pompeii</figcaption></figure>
<p>The helmets in the museum at Naples still carry dents from the arena.</p>
<p>A mosaic in the villa shows <img src="mosaic.webp" alt="gladiators fighting a lion"> in bright tesserae,
laid by craftsmen from Alexandria around the second century.</p>
<img src="missing.png" alt="a missing picture of a chariot"><img src="data:image/png;base64,AAAA" alt="inline chariot">
</article></body></html>"""


def image(path: Path, kind: str, color: str = "red") -> Path:
    Image.new("RGB", (8, 6), color).save(path, kind)
    return path


def corpus(root: Path) -> Path:
    root.mkdir()
    image(root / "colosseum.png", "PNG")
    (root / "colosseum.txt").write_text("The Colosseum at dusk, seen from the Palatine hill\nA photograph from 1910.")
    image(root / "lion.gif", "GIF")
    (root / "lion.gif.caption").write_text("A Barbary lion in a cage beneath the arena")
    image(root / "retiarius.png", "PNG", "blue")
    image(root / "helmet.jpg", "JPEG")
    image(root / "mosaic.webp", "WEBP")
    (root / "not-a-picture.png").write_text("these bytes are text, not an image of a chariot")
    (root / "story.md").write_text(STORY)
    (root / "helmets.html").write_text(PAGE)
    (root / "history.md").write_text("# The Colosseum\n\nThe Flavian amphitheatre was opened by Titus in AD 80.\n")
    return root


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus(tmp_path_factory.mktemp("pictures") / "corpus")


@pytest.fixture
def index(tmp_path: Path, pictures: Path) -> Iterator[LocalIndex]:
    store = LocalIndex(tmp_path / "search.db")
    store.add([pictures])
    yield store
    store.close()


def uri(path: Path) -> str:
    return path.resolve().as_uri()


def found(hits: list[Any]) -> list[tuple[str, str]]:
    """(image file, page file) of each hit."""
    return [(h.image_url.rsplit("/", 1)[1], h.url.rsplit("/", 1)[1]) for h in hits]


def test_image_files_are_found_by_their_sidecar_captions(index: LocalIndex, pictures: Path) -> None:
    [hit] = index.search_images("Palatine dusk")
    assert hit.image_url == hit.url == uri(pictures / "colosseum.png")
    assert hit.title == "The Colosseum at dusk, seen from the Palatine hill"  # the caption's first line
    assert hit.snippet.startswith("The Colosseum at dusk") and hit.mime_type == "image/png"
    assert found(index.search_images("Barbary cage")) == [("lion.gif", "lion.gif")]  # lion.gif.caption
    assert index.search_images("Barbary")[0].mime_type == "image/gif"
    assert found(index.search_images("retiarius")) == [("retiarius.png", "retiarius.png")]  # no sidecar: its name
    # A sidecar is no document of its own, a file named like an image that is not one is not indexed.
    urls = dict(index.documents())
    assert uri(pictures / "colosseum.txt") not in urls and uri(pictures / "not-a-picture.png") not in urls
    assert index.search_images("chariot") == []  # nor missing files, nor data: URIs


def test_images_in_documents_are_found_by_alt_text_caption_and_text_around(index: LocalIndex, pictures: Path) -> None:
    helmet = index.search_images("murmillo Pompeii")[0]  # the <figcaption> wins over alt="helmet"
    assert (helmet.image_url, helmet.url) == (uri(pictures / "helmet.jpg"), uri(pictures / "helmets.html"))
    assert (helmet.title, helmet.snippet, helmet.mime_type) == (
        "Roman helmets",
        "A murmillo helmet found at Pompeii",
        "image/jpeg",
    )
    assert found(index.search_images("dents museum Naples")) == [
        ("helmet.jpg", "helmets.html")
    ]  # a figure's neighbours
    mosaic = index.search_images("tesserae Alexandria")  # the paragraph the image stands in
    assert found(mosaic) == [("mosaic.webp", "helmets.html")] and mosaic[0].snippet == "gladiators fighting a lion"
    marcus = index.search_images("Capua spectators")  # an image alone in its paragraph: the ones beside it
    assert found(marcus) == [("retiarius.png", "story.md")]
    assert marcus[0].snippet == "A retiarius with his net and trident"
    assert index.search_images("Titus") == []  # a document without images gives web hits only
    assert index.search("Titus")[0].url == uri(pictures / "history.md") and not index.search("Titus")[0].image_url


def test_reindexing_and_removing_a_document_replaces_and_drops_its_images(index: LocalIndex, pictures: Path) -> None:
    before = index.image_count()
    assert index.add([pictures / "helmets.html"]) == 1 and index.image_count() == before
    assert index.remove(uri(pictures / "helmets.html"))
    assert index.image_count() == before - 2 and index.search_images("tesserae") == []
    assert found(index.search_images("murmillo helmet")) == [("helmet.jpg", "helmet.jpg")]  # the file itself


def test_the_model_is_offered_search_type_only_when_it_has_a_choice(index: LocalIndex) -> None:
    search = GoogleSearch(LocalSearch(index), 5)
    assert "search_type" not in (search.declaration().parameters or {})["properties"]
    search.search_types = ["web_search", "image_search"]
    offered = (search.declaration().parameters or {})["properties"]["search_type"]
    assert offered == {"type": "string", "enum": ["web_search", "image_search"]}
    assert (
        search.search_type({}) == "web_search" and search.search_type({"search_type": "image_search"}) == "image_search"
    )
    search.search_types = ["image_search"]
    assert search.search_type({}) == search.search_type({"search_type": "web_search"}) == "image_search"


def test_a_text_model_is_told_each_image_s_url() -> None:
    image = {"url": "https://example.org/arch", "title": "Arch", "snippet": "An arch", "image_url": "https://i/a.png"}
    page = {"url": "https://example.org/rome", "title": "Rome", "snippet": "A city"}
    step = GoogleSearchResultStep(
        call_id="c1", result=[GoogleSearchResultItem(**image), GoogleSearchResultItem(**page)]
    )
    assert GOOGLE_SEARCH.result_text(step).splitlines() == [
        "- Arch (https://example.org/arch): An arch [image: https://i/a.png]",
        "- Rome (https://example.org/rome): A city",
    ]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory, pictures: Path) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("imgsearch")
    model = {"backend": "scripted", "inline": True, "record": workdir / "requests.jsonl"}
    server = LiveServer(workdir, {f"models.{MODEL}": model}, env=netguard.server_env(workdir / "netguard.log"))
    server.guard_log = workdir / "netguard.log"  # type: ignore[attr-defined]
    assert "8 images in the index" in server.index(pictures)
    server.start()
    yield server
    server.stop()
    no_packets_left(server)


def offered(server: LiveServer) -> dict[str, Any]:
    """The google_search declaration the model was offered in its last round."""
    request = json.loads((server.workdir / "requests.jsonl").read_text().splitlines()[-1])
    return next(f for f in request["functions"] if f["name"] == "google_search")


def search_steps(result: dict[str, Any]) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
    """(type, search_type, result items) of each search step, items from the result steps' deltas."""
    steps = []
    for step in result["steps"]:
        if step["type"] == "google_search_call":
            steps.append((step["type"], step["start"].get("search_type"), step["deltas"][0]["arguments"]["queries"]))
        elif step["type"] == "google_search_result":
            steps.append((step["type"], None, step["deltas"][0]["result"]))
    return steps


def test_image_search_through_the_sdk_shows_its_type_and_image_results(
    local_server: LiveServer, pictures: Path
) -> None:
    client = client_for(local_server)
    script = rounds(
        [call("google_search", queries=["murmillo helmet Pompeii"], search_type="image_search")],
        [{"text": "Here is a helmet."}],
    )
    result, events = streamed(client, input=script, tools=BOTH)
    assert [s["type"] for s in result["steps"]] == ["google_search_call", "google_search_result", "model_output"]
    call_step, result_step, _ = result["steps"]
    assert call_step["start"]["search_type"] == "image_search"
    assert call_step["deltas"][0]["arguments"] == {"queries": ["murmillo helmet Pompeii"]}  # the type is beside them
    items = result_step["deltas"][0]["result"]
    assert items[0] == {
        "url": uri(pictures / "helmets.html"),
        "title": "Roman helmets",
        "snippet": "A murmillo helmet found at Pompeii",
        "image_url": uri(pictures / "helmet.jpg"),
        "mime_type": "image/jpeg",
    }
    assert all(item["image_url"].startswith("file://") for item in items)
    stored = client.interactions.get(events[0]["interaction"]["id"])
    assert stored.steps[0].type == "google_search_call" and stored.steps[0].search_type == "image_search"
    assert stored.steps[1].result[0].model_dump()["image_url"] == uri(pictures / "helmet.jpg")
    cited = {a.url for a in stored.steps[2].content[0].annotations}
    assert uri(pictures / "helmets.html") in cited  # an image cites the page it is on
    assert offered(local_server)["parameters"]["properties"]["search_type"]["enum"] == ["web_search", "image_search"]
    no_packets_left(local_server)


def test_web_and_image_searches_in_one_round_are_one_call_each(local_server: LiveServer, pictures: Path) -> None:
    client = client_for(local_server)
    both = [
        call("google_search", queries=["Colosseum Titus"]),  # no search_type: web_search
        call("google_search", queries=["Colosseum Palatine"], search_type="image_search"),
    ]
    result, _ = streamed(client, input=rounds(both, [{"text": "Done."}]), tools=BOTH)
    steps = search_steps(result)
    assert [(kind, search_type) for kind, search_type, _ in steps] == [
        ("google_search_call", "web_search"),
        ("google_search_result", None),
        ("google_search_call", "image_search"),
        ("google_search_result", None),
    ]
    web, images = steps[1][2], steps[3][2]
    assert web[0]["url"] == uri(pictures / "history.md") and all("image_url" not in item for item in web)
    assert images[0]["image_url"] == uri(pictures / "colosseum.png")
    assert all("image_url" in item for item in images)


def test_a_request_for_images_only_searches_images(local_server: LiveServer, pictures: Path) -> None:
    client = client_for(local_server)
    script = rounds([call("google_search", queries=["Barbary cage"], search_type="web_search")], [{"text": "A lion."}])
    result, _ = streamed(client, input=script, tools=[{"type": "google_search", "search_types": ["image_search"]}])
    [(_, search_type, _), (_, _, items)] = search_steps(result)
    assert search_type == "image_search"  # web_search was not asked for: the call runs the request's type
    assert [item["image_url"] for item in items] == [uri(pictures / "lion.gif")]
    assert "search_type" not in offered(local_server)["parameters"]["properties"]


def test_a_plain_google_search_is_a_web_search(local_server: LiveServer) -> None:
    script = rounds([call("google_search", queries=["Capua ludus"])], [{"text": "Capua."}])
    result, _ = streamed(client_for(local_server), input=script, tools=[{"type": "google_search"}])
    [(_, search_type, _), (_, _, items)] = search_steps(result)
    assert search_type == "web_search" and items[0]["url"].endswith("/story.md") and "image_url" not in items[0]


SEARXNG_IMAGES = [
    {
        "template": "images.html",
        "url": "https://example.org/colosseum",
        "title": "Colosseum at night",
        "content": "The amphitheatre lit up",
        "img_src": "https://img.example.org/colosseum.jpg",
        "thumbnail_src": "https://img.example.org/colosseum-small.jpg",
        "img_format": "image/jpeg",
    },
    {
        "template": "images.html",
        "url": "https://example.org/arch",
        "title": "Arch",
        "img_src": "https://img.example.org/arch.png",
        "thumbnail": "https://img.example.org/arch-t.png",
        "img_format": "PNG",
    },
    {"template": "images.html", "url": "https://example.org/no-image", "title": "no img_src"},
    {"template": "default.html", "url": "https://example.org/page", "title": "a page", "img_src": "https://x/y.png"},
]
SEARXNG_WEB = [{"url": "https://example.org/history", "title": "History", "content": "Built under Vespasian"}]


@contextmanager
def fake_searxng(asked: list[dict[str, list[str]]], hold_first: threading.Event | None = None) -> Iterator[str]:
    """SearxNG's JSON API; ``hold_first``: the first search answers once it is set (or after 10 s)."""

    def answer(path: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(path).query)
        asked.append(query)
        if hold_first is not None and len(asked) == 1:
            hold_first.wait(10)
        results = SEARXNG_IMAGES if query.get("categories") == ["images"] else SEARXNG_WEB
        return {"query": query["q"][0], "results": results}

    with json_api(answer) as url:
        yield url


def test_searxng_image_results_through_the_sdk(tmp_path: Path) -> None:
    asked: list[dict[str, list[str]]] = []
    with fake_searxng(asked) as url:
        server = guarded_server(tmp_path, {"google_search": {"provider": "searxng", "searxng_url": url}}).start()
        try:
            both = [
                call("google_search", queries=["colosseum"], search_type="image_search"),
                call("google_search", queries=["colosseum history"]),
            ]
            result, _ = streamed(client_for(server), input=rounds(both, [{"text": "Done."}]), tools=BOTH)
        finally:
            server.stop()
    assert [(q["q"], q["categories"], q["format"]) for q in asked] == [
        (["colosseum"], ["images"], ["json"]),
        (["colosseum history"], ["general"], ["json"]),
    ]
    steps = search_steps(result)
    assert [s[1] for s in steps] == ["image_search", None, "web_search", None]
    images, web = steps[1][2], steps[3][2]
    assert images == [
        {
            "url": "https://example.org/colosseum",
            "title": "Colosseum at night",
            "snippet": "The amphitheatre lit up",
            "image_url": "https://img.example.org/colosseum.jpg",
            "thumbnail_url": "https://img.example.org/colosseum-small.jpg",
            "mime_type": "image/jpeg",
        },
        {
            "url": "https://example.org/arch",
            "title": "Arch",
            "snippet": "Arch",
            "image_url": "https://img.example.org/arch.png",
            "thumbnail_url": "https://img.example.org/arch-t.png",  # "PNG" is no media type: left out
        },
    ]
    assert web == [{"url": "https://example.org/history", "title": "History", "snippet": "Built under Vespasian"}]
    no_packets_left(server)


def test_an_image_search_cut_by_a_crash_runs_again_as_an_image_search(tmp_path: Path) -> None:
    """The call step logs search_type beside the queries: the run taken over runs the same search again."""
    asked: list[dict[str, list[str]]] = []
    release = threading.Event()
    with fake_searxng(asked, hold_first=release) as url:
        sections = {"models.m": {"backend": "scripted", "inline": True}}
        sections["tools.google_search"] = {"provider": "searxng", "searxng_url": url}
        server = CrashingServer(LiveServer(tmp_path, sections))
        server.start()
        search = {"name": "google_search", "arguments": {"queries": ["arch"], "search_type": "image_search"}}
        script = json.dumps({"rounds": [[{"call": {**search, "id": "search01"}}], [{"text": "An arch."}]]})
        body = {"model": "m", "input": script, "tools": BOTH, "background": True}
        try:
            _, got = crash_once(server, body, lambda events: bool(asked) and events)
        finally:
            release.set()
            server.stop()
    assert got.status == "completed", got.errors
    assert [q["categories"] for q in asked] == [["images"], ["images"]]  # before the kill, and after
    call_step, result_step = got.steps[0], got.steps[1]
    assert call_step.type == "google_search_call" and call_step.search_type == "image_search"
    assert result_step.result[0].model_dump()["image_url"] == "https://img.example.org/colosseum.jpg"
