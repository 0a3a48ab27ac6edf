"""file_search and file search stores, end to end through google-genai: a store is created, a PDF, a markdown and
an HTML file are uploaded (resumable, as the SDK does it) and chunked, the scripted model calls file_search, the
answer cites the chunk it drew on; another key can neither see nor use the store; a deleted document is no longer
found. A generated corpus measures recall@5 of BM25 alone and of BM25 fused with embeddings. The server, and the
service itself, run on both catalogs: SQLite, and PostgreSQL (a scratch database); tests/test_file_search_replicas.py
runs servers that share one."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from google import genai
from google.genai import errors
from google.genai._interactions import BadRequestError, NotFoundError

import netguard
import pg
from live import FIXTURES, LiveServer
from openinteractions.config import FileSearchSettings
from openinteractions.errors import ApiError
from openinteractions.filestores.chunking import chunk_document
from openinteractions.filestores.metadata_filter import FilterError, parse
from openinteractions.filestores.service import FileStores
from openinteractions.tools.file_search import FileSearch, FileSearchTool
from protocol import check_stream
from test_inputs import pdf
from test_tools import MODEL, call, rounds

ALICE, BOB = "alice-key-123456", "bob-key-12345678"

MARKDOWN = """# Beekeeping notes

Honey bees keep their hive at about 35 degrees Celsius in the brood nest.

A strong colony holds forty thousand workers in midsummer and fewer than ten thousand in winter.
"""

HTML = """<html><head><title>Lighthouses</title></head><body><article>
<h1>Lighthouses of the north coast</h1>
<p>The lighthouse at Cape Wrath was built by Robert Stevenson in 1828 and is 20 metres tall.</p>
<p>Its lamp was converted to electric power in 1980 and the keepers left in 1998.</p>
</article></body></html>"""

PDF_PAGES = (
    "Glaciers cover about ten percent of the land surface of the Earth.",
    "The Aletsch glacier in Switzerland is twenty three kilometres long.",
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server, on each store: its file search stores follow it (a SQLite file, or PostgreSQL's tables)."""
    workdir = tmp_path_factory.mktemp("filesearch")
    log = workdir / "netguard.log"
    with pg.store_section(request.param) as store:
        sections: dict[str, dict[str, Any]] = {
            "auth": {"api_keys": [ALICE, BOB]},
            f"models.{MODEL}": {"backend": "scripted", "inline": True, "script": FIXTURES / "seed.json"},
            "tools.file_search": {"chunk_tokens": 40, "chunk_overlap_tokens": 8},
            "store": store,
        }
        live = LiveServer(workdir, sections, env={**netguard.server_env(log), "HF_HUB_OFFLINE": "1"}).start()
        yield live
        live.stop()
    netguard.no_packets_left(log)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    paths = {"glaciers.pdf": pdf(*PDF_PAGES), "bees.md": MARKDOWN.encode(), "lighthouses.html": HTML.encode()}
    for name, data in paths.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in paths}


def client(server: LiveServer, key: str = ALICE) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": server.url})


def upload(alice: genai.Client, store: str, path: Path, **config: Any) -> str:
    """The document's name, once the operation says it is indexed."""
    operation = alice.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store, file=str(path), config={"display_name": path.name, **config}
    )
    assert operation.done and operation.error is None, operation
    operation = alice.operations.get(operation)  # the operation is kept: get answers it again
    assert operation.done and operation.response is not None
    assert operation.response.parent == store
    return str(operation.response.document_name)


@pytest.fixture(scope="module")
def library(server: LiveServer, files: dict[str, Path]) -> dict[str, str]:
    """A store of alice's with the three files: store name, and each file's document name."""
    alice = client(server)
    store = alice.file_search_stores.create(config={"display_name": "Field notes"})
    assert store.name and store.name.startswith("fileSearchStores/field-notes-")
    names = {"store": store.name}
    for name, path in files.items():
        names[name] = upload(alice, store.name, path, custom_metadata=[{"key": "kind", "string_value": path.suffix}])
    return names


def ask(server: LiveServer, question: str, answer: str, tool: dict[str, Any], key: str = ALICE) -> dict[str, Any]:
    script = rounds([call("file_search", queries=[question])], [{"text": answer}])
    with client(server, key) as sdk:
        events = [
            e.model_dump(mode="json", exclude_none=True, by_alias=True)
            for e in sdk.interactions.create(model=MODEL, input=script, tools=[tool], stream=True)
        ]
    check_stream(events)
    # The stored interaction as JSON: google-genai's file_search_result step has no field for the result.
    path = f"{server.url}/v1beta/interactions/{events[0]['interaction']['id']}"
    interaction: dict[str, Any] = httpx.get(path, headers={"x-goog-api-key": key}).json()
    assert interaction["status"] == "completed", interaction
    return interaction


def steps_of(interaction: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in interaction["steps"] if s["type"] == kind]


def test_a_store_holds_the_uploaded_documents(server: LiveServer, library: dict[str, str]) -> None:
    alice = client(server)
    store = alice.file_search_stores.get(name=library["store"])
    assert (store.display_name, store.active_documents_count, store.pending_documents_count) == ("Field notes", 3, 0)
    assert store.size_bytes and store.size_bytes > 500
    assert library["store"] in [s.name for s in alice.file_search_stores.list()]
    documents = {d.display_name: d for d in alice.file_search_stores.documents.list(parent=library["store"])}
    assert set(documents) == {"glaciers.pdf", "bees.md", "lighthouses.html"}
    pdf_document = documents["glaciers.pdf"]
    assert (pdf_document.state.value, pdf_document.mime_type) == ("STATE_ACTIVE", "application/pdf")  # type: ignore[union-attr]
    assert pdf_document.custom_metadata and pdf_document.custom_metadata[0].string_value == ".pdf"
    assert alice.file_search_stores.documents.get(name=library["bees.md"]).mime_type == "text/markdown"


@pytest.mark.parametrize(
    ("question", "answer", "document", "page", "quote"),
    [
        ("how long is the Aletsch glacier", "The Aletsch glacier is twenty three kilometres long.",
         "glaciers.pdf", 2, "twenty three kilometres"),
        ("how warm is a bee hive", "Bees keep the brood nest at about 35 degrees Celsius.",
         "bees.md", None, "35 degrees Celsius"),
        ("who built the Cape Wrath lighthouse", "Robert Stevenson built the Cape Wrath lighthouse in 1828.",
         "lighthouses.html", None, "Robert Stevenson"),
    ],
)  # fmt: skip
def test_file_search_finds_and_cites_the_right_chunk(
    server: LiveServer, library: dict[str, str], question: str, answer: str, document: str, page: int | None,
    quote: str,
) -> None:  # fmt: skip
    tool = {"type": "file_search", "file_search_store_names": [library["store"]]}
    interaction = ask(server, question, answer, tool)
    call_step, result_step = (steps_of(interaction, f"file_search_{kind}")[0] for kind in ("call", "result"))
    assert set(call_step) == {"type", "id"} and result_step["call_id"] == call_step["id"]  # the spec's bare call step
    top = result_step["result"][0]
    assert top["document_uri"] == library[document] and quote in top["text"]
    output = steps_of(interaction, "model_output")[-1]["content"][0]
    assert output["text"] == answer
    cited = [a for a in output["annotations"] if a["type"] == "file_citation"]
    assert cited[0]["document_uri"] == library[document] and cited[0]["file_name"] == document
    assert quote in cited[0]["source"] and cited[0].get("page_number") == page
    assert cited[0]["end_index"] == len(answer.encode())
    assert all(c["document_uri"] != library[document] or quote in c["source"] for c in cited[:1])


def test_top_k_and_metadata_filter_are_honoured(server: LiveServer, library: dict[str, str]) -> None:
    store = library["store"]
    question = "glacier bees lighthouse"
    every = ask(server, question, "Notes.", {"type": "file_search", "file_search_store_names": [store], "top_k": 3})
    assert len({item["document_uri"] for item in steps_of(every, "file_search_result")[0]["result"]}) == 3
    one = ask(server, question, "Notes.", {"type": "file_search", "file_search_store_names": [store], "top_k": 1})
    assert len(steps_of(one, "file_search_result")[0]["result"]) == 1
    tool = {"type": "file_search", "file_search_store_names": [store], "metadata_filter": 'kind = ".md"'}
    filtered = ask(server, question, "Notes.", tool)
    assert {item["document_uri"] for item in steps_of(filtered, "file_search_result")[0]["result"]} == {
        library["bees.md"]
    }
    with client(server) as alice, pytest.raises(BadRequestError, match="metadata_filter"):
        bad = {"type": "file_search", "file_search_store_names": [store], "metadata_filter": "kind = "}
        alice.interactions.create(model=MODEL, input="hi", tools=[bad])  # type: ignore[list-item]


def test_another_key_can_neither_see_nor_use_the_store(
    server: LiveServer, library: dict[str, str], files: dict[str, Path]
) -> None:
    bob = client(server, BOB)
    store = library["store"]
    assert store not in [s.name for s in bob.file_search_stores.list()]
    attempts = [
        lambda: bob.file_search_stores.get(name=store),
        lambda: bob.file_search_stores.delete(name=store, config={"force": True}),
        lambda: bob.file_search_stores.documents.list(parent=store),
        lambda: bob.file_search_stores.documents.get(name=library["bees.md"]),
        lambda: bob.file_search_stores.documents.delete(name=library["bees.md"], config={"force": True}),
        lambda: bob.file_search_stores.upload_to_file_search_store(file_search_store_name=store,
                                                                   file=str(files["bees.md"])),
    ]  # fmt: skip
    for attempt in attempts:
        with pytest.raises(errors.ClientError) as refused:
            attempt()
        assert refused.value.code == 404, refused.value
    with pytest.raises(NotFoundError, match="no such file search store"):
        tool = {"type": "file_search", "file_search_store_names": [store]}
        bob.interactions.create(model=MODEL, input="hi", tools=[tool])  # type: ignore[list-item]
    assert client(server).file_search_stores.get(name=store).active_documents_count == 3


def test_a_deleted_document_is_no_longer_found(server: LiveServer, files: dict[str, Path]) -> None:
    alice = client(server)
    store = alice.file_search_stores.create(config={"display_name": "Scratch"}).name
    assert store is not None
    bees, lighthouses = upload(alice, store, files["bees.md"]), upload(alice, store, files["lighthouses.html"])
    tool = {"type": "file_search", "file_search_store_names": [store]}
    question = "bee hive temperature"
    before = steps_of(ask(server, question, "Warm.", tool), "file_search_result")[0]["result"]
    assert bees in {item["document_uri"] for item in before}
    with pytest.raises(errors.ClientError) as refused:
        alice.file_search_stores.documents.delete(name=bees)  # it has chunks: Google asks for force
    assert refused.value.code == 400
    alice.file_search_stores.documents.delete(name=bees, config={"force": True})
    after = steps_of(ask(server, question, "Warm.", tool), "file_search_result")[0]["result"]
    assert bees not in {item["document_uri"] for item in after}
    assert {d.name for d in alice.file_search_stores.documents.list(parent=store)} == {lighthouses}
    alice.file_search_stores.delete(name=store, config={"force": True})
    with pytest.raises(errors.ClientError):
        alice.file_search_stores.get(name=store)


def start_upload(url: str, store: str, size: int) -> httpx.Response:
    """The first request of a resumable upload of ``size`` bytes of text, with alice's key."""
    return httpx.post(
        f"{url}/upload/v1beta/{store}:uploadToFileSearchStore",
        headers={"x-goog-api-key": ALICE, "x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start",
                 "x-goog-upload-header-content-length": str(size),
                 "x-goog-upload-header-content-type": "text/plain"},
        json={"displayName": "puffins.txt"},
        timeout=60,
    )  # fmt: skip


def test_a_resumable_upload_in_several_requests(server: LiveServer, library: dict[str, str]) -> None:
    """As Google's: bytes at the offsets announced, ``active`` until the request that finalises; the upload URL
    is the credential (no key); a wrong offset is refused."""
    data = b"Puffins nest in burrows on the cliffs of Skomer island. " * 40
    start = start_upload(server.url, library["store"], len(data))
    assert start.status_code == 200 and start.headers["x-goog-upload-status"] == "active"
    url = start.headers["x-goog-upload-url"]
    half = len(data) // 2

    def send(offset: int, part: bytes, command: str) -> httpx.Response:
        headers = {"x-goog-upload-command": command, "x-goog-upload-offset": str(offset)}
        return httpx.post(url, headers=headers, content=part, timeout=60)

    assert send(0, data[:half], "upload").headers["x-goog-upload-status"] == "active"
    assert send(half + 1, data[half:], "upload, finalize").status_code == 400
    final = send(half, data[half:], "upload, finalize")
    assert final.headers["x-goog-upload-status"] == "final"
    operation = final.json()
    assert operation["done"] and operation["response"]["sizeBytes"] == str(len(data))
    alice = client(server)
    document = alice.file_search_stores.documents.get(name=operation["response"]["documentName"])
    assert (document.display_name, document.size_bytes) == ("puffins.txt", len(data))
    assert send(0, data, "upload, finalize").status_code == 404  # finished: the URL is spent
    alice.file_search_stores.documents.delete(name=str(document.name), config={"force": True})


# ---- units ---------------------------------------------------------------------------------------------------


def test_chunks_overlap_and_keep_their_pdf_page() -> None:
    text = " ".join(f"w{i}" for i in range(100)).encode()
    chunks = chunk_document(text, "text/plain", 40, 10)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w30", "w60"]
    assert chunks[1].text.split()[:10] == chunks[0].text.split()[-10:]
    pages = chunk_document(pdf("alpha beta gamma", "delta epsilon"), "application/pdf", 3, 0)
    assert [(c.text, c.page) for c in pages] == [("alpha beta gamma", 1), ("delta epsilon", 2)]


def test_metadata_filters() -> None:
    doc = {"genre": "fiction", "year": 1960.0, "tags": ["sea", "war"]}
    assert parse('genre = "fiction" AND year >= 1950')(doc)
    assert parse("year < 1900 OR tags = war")(doc)
    assert not parse("NOT (genre = fiction)")(doc)
    assert parse("-tags = peace AND author != someone")(doc)
    assert not parse("author = someone")(doc)
    for broken in ("genre =", "(genre = fiction", "= fiction", ""):
        with pytest.raises(FilterError):
            parse(broken)


# ---- retrieval quality -------------------------------------------------------------------------------------

SUBJECTS = [("car", "automobile"), ("doctor", "physician"), ("lawyer", "attorney"), ("child", "kid"),
            ("ship", "vessel"), ("picture", "photograph"), ("shop", "store"), ("movie", "film"),
            ("teacher", "instructor"), ("rubbish", "garbage")]  # fmt: skip
PLACES = [("river", "stream"), ("forest", "woods"), ("hill", "slope"), ("harbour", "port"), ("road", "highway"),
          ("village", "hamlet"), ("shore", "beach"), ("cellar", "basement")]  # fmt: skip
EVENTS = ["storm", "festival", "election", "eclipse", "harvest", "parade"]


def corpus(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """(passage, query) pairs: the query names the passage's subject and place by their synonyms, its event
    as it is, so that words alone tie among the passages of one event."""
    rng = random.Random(seed)
    combos = rng.sample([(s, p, e) for s in SUBJECTS for p in PLACES for e in EVENTS], count)
    return [
        (f"Reports say the {s[0]} by the {p[0]} was seen during the {e}.", f"{s[1]} near the {p[1]} {e}")
        for s, p, e in combos
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The store database a ``FileStores`` is given: None (its SQLite catalog), or a scratch PostgreSQL one."""
    if request.param == "sqlite":
        yield None
        return
    with pg.scratch_database() as name:
        yield pg.url(name)


def test_recall_at_5_of_bm25_and_fused(tmp_path: Path, database: str | None) -> None:
    pairs = corpus(60)
    settings = FileSearchSettings(chunk_tokens=64, wait_seconds=60)
    stores = FileStores(settings, tmp_path, database)
    if stores.embedder is None:
        pytest.skip(f"no embedder: {stores.embedder_problem}")

    async def measure() -> tuple[float, float]:
        store = (await stores.create_store("o", {"displayName": "quality"}))["name"]
        for i, (passage, _) in enumerate(pairs):
            token = await stores.start_upload("o", store, {"displayName": f"d{i}"}, len(passage), "text/plain", "")
            operation = await stores.upload_bytes(token, 0, passage.encode(), finalize=True)
            assert operation is not None and operation["done"]
        names = {i: f"d{i}" for i in range(len(pairs))}
        hits = {"bm25": 0, "fused": 0}
        for i, (_, query) in enumerate(pairs):
            for mode in hits:
                embedded = [store] if mode == "fused" else []
                found = await stores.retrieval.search([store], embedded, query, 5)
                hits[mode] += names[i] in {f.document_title for f in found}
        return hits["bm25"] / len(pairs), hits["fused"] / len(pairs)

    bm25, fused = asyncio.run(measure())
    stores.close()
    catalog = "PostgreSQL" if database else "SQLite"
    print(f"\nrecall@5 on {len(pairs)} generated passages ({catalog}): BM25 {bm25:.2f}, "
          f"BM25+{stores.embedding_model} {fused:.2f}")  # fmt: skip
    assert fused >= bm25 - 0.02
    assert bm25 > 0.3  # the event's word narrows BM25 to a few passages


# ---- an OpenAI-compatible /v1/embeddings server ------------------------------------------------------------


class Embeddings(BaseHTTPRequestHandler):
    """Hashed bag-of-words vectors: texts sharing words point the same way."""

    asked: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.asked.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        data = [{"index": i, "embedding": self.vector(text)} for i, text in enumerate(body["input"])]
        answer = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    @staticmethod
    def vector(text: str) -> list[float]:
        vector = [0.0] * 32
        for word in text.lower().split():
            vector[sum(word.encode()) % 32] += 1.0
        return vector

    def log_message(self, *args: Any) -> None:
        pass


async def _upload(stores: FileStores, store: str, text: str, name: str, owner: str = "o",
                  **body: Any) -> dict[str, Any]:  # fmt: skip
    token = await stores.start_upload(owner, store, {"displayName": name, **body}, len(text), "text/plain", "")
    operation = await stores.upload_bytes(token, 0, text.encode(), finalize=True)
    assert operation is not None
    return operation


def test_embeddings_from_an_openai_compatible_server(tmp_path: Path, database: str | None) -> None:
    Embeddings.asked.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    settings = FileSearchSettings(embeddings="openai", embeddings_url=url, embeddings_model="bge-m3",
                                  embeddings_api_key="secret")  # fmt: skip
    stores = FileStores(settings, tmp_path, database)

    async def scenario() -> None:
        store = await stores.create_store("o", {})
        assert store["embeddingModel"] == "bge-m3"
        assert (await _upload(stores, store["name"], "The heron waits in the reeds.", "heron"))["done"]
        found = await stores.search("o", [store["name"]], "heron reeds", 3, None)
        assert [f.document_title for f in found] == ["heron"]
        server.shutdown()
        server.server_close()  # the embeddings server is gone: the upload fails, and says why
        failed = await _upload(stores, store["name"], "Another bird.", "wren")
        assert failed["done"] and "embeddings server failed" in failed["error"]["message"]
        documents = (await stores.list_documents("o", store["name"], None, None))["documents"]
        assert [d["state"] for d in documents] == ["STATE_ACTIVE", "STATE_FAILED"]
        found = await stores.search("o", [store["name"]], "heron reeds", 3, None)  # BM25 alone, meanwhile
        assert [f.document_title for f in found] == ["heron"]
        tool = FileSearch(stores, "o", FileSearchTool(file_search_store_names=[store["name"]]))
        assert (await tool.run({"queries": ["heron"]})).result[0]["title"] == "heron"
        await stores.delete_store("o", store["name"], force=True)  # gone before the model's call: an error result
        outcome = await tool.run({"queries": ["heron"]})
        assert outcome.is_error and "no such file search store" in outcome.result[0]["error"]

    try:
        asyncio.run(scenario())
    finally:
        stores.close()
    asked = Embeddings.asked
    assert [a["path"] for a in asked] == ["/v1/embeddings", "/v1/embeddings"]
    assert {a["model"] for a in asked} == {"bge-m3"} and asked[0]["auth"] == "Bearer secret"
    assert asked[1]["input"] == ["heron reeds"]


# ---- the service on either catalog -------------------------------------------------------------------------


def bm25_only(folder: Path, database: str | None) -> FileStores:
    settings = FileSearchSettings(embeddings="none", chunk_tokens=16, chunk_overlap_tokens=0, wait_seconds=30)
    return FileStores(settings, folder, database)


async def refused(status: int, work: Any) -> ApiError:
    with pytest.raises(ApiError) as error:
        await work
    assert error.value.http_status == status, error.value.message
    return error.value


def titles(found: list[Any]) -> list[str]:
    return [f.document_title for f in found]


def test_owners_uploads_and_deletions_on_either_catalog(tmp_path: Path, database: str | None) -> None:
    """What the live tests check through google-genai, at the service and on both catalogs: another owner finds
    nothing of a store; a resumable upload takes its bytes in order, within the limits; a metadata filter picks
    documents; a deleted document, and a deleted store, are no longer found."""
    stores = bm25_only(tmp_path, database)

    async def scenario() -> None:
        store = (await stores.create_store("alice", {"displayName": "Birds"}))["name"]
        heron = "The grey heron waits in the reeds by the river."
        done = await _upload(
            stores, store, heron, "heron", "alice", customMetadata=[{"key": "kind", "stringValue": "bird"}]
        )
        operation, document = done["name"], done["response"]["documentName"]
        assert done["done"] and (await stores.get_operation("alice", operation)) == done
        assert titles(await stores.search("alice", [store], "heron reeds", 5, None)) == ["heron"]
        assert await stores.search("alice", [store], "heron", 5, 'kind = "fish"') == []
        assert await stores.search("alice", [store], "zebra!", 5, None) == []

        # Bob sees none of it, and can do nothing with it.
        assert (await stores.list_stores("bob", None, None))["fileSearchStores"] == []
        assert stores.missing_store("bob", [store]) == store and stores.missing_store("alice", [store]) is None
        for attempt in (stores.get_store("bob", store), stores.list_documents("bob", store, None, None),
                        stores.get_document("bob", document), stores.delete_document("bob", document, True),
                        stores.delete_store("bob", store, True), stores.get_operation("bob", operation),
                        stores.search("bob", [store], "heron", 5, None),
                        stores.start_upload("bob", store, {}, 10, "text/plain", "x")):  # fmt: skip
            await refused(404, attempt)

        # A resumable upload: its bytes in order, at the offset it has reached; the URL is spent once finalised.
        egret = b"The little egret hunts in the shallow water of the estuary."
        token = await stores.start_upload("alice", store, {"displayName": "egret"}, len(egret), "text/plain", "")
        await refused(400, stores.upload_bytes(token, 5, egret[5:], True))
        assert await stores.upload_bytes(token, 0, egret[:20], False) is None
        await refused(400, stores.upload_bytes(token, 0, egret, True))
        assert (await stores.upload_bytes(token, 20, egret[20:], True) or {})["done"]
        await refused(404, stores.upload_bytes(token, len(egret), b"", True))
        token = await stores.start_upload("alice", store, {}, 4, "text/plain", "")
        await refused(400, stores.upload_bytes(token, 0, b"too long", True))  # more than it announced: dropped
        await refused(404, stores.upload_bytes(token, 0, b"four", True))
        pending = [await stores.start_upload("alice", store, {}, 4, "text/plain", "") for _ in range(8)]
        await refused(429, stores.start_upload("alice", store, {}, 4, "text/plain", ""))
        for token in pending:  # finishing them makes room again
            assert (await stores.upload_bytes(token, 0, b"wren", True) or {})["done"]
        counts = await stores.get_store("alice", store)
        assert (counts["activeDocumentsCount"], counts["sizeBytes"]) == ("10", str(len(heron) + len(egret) + 32))

        # Deletions: a document with chunks needs force; then it, and later the whole store, are not found.
        await refused(400, stores.delete_document("alice", document, False))
        await stores.delete_document("alice", document, True)
        assert titles(await stores.search("alice", [store], "heron egret", 5, None)) == ["egret"]
        await refused(404, stores.get_document("alice", document))
        await refused(400, stores.delete_store("alice", store, False))
        await stores.delete_store("alice", store, True)
        await refused(404, stores.search("alice", [store], "egret", 5, None))
        assert (await stores.list_stores("alice", None, None))["fileSearchStores"] == []

    try:
        asyncio.run(scenario())
    finally:
        stores.close()


def test_two_servers_on_one_postgresql_database_share_stores_uploads_and_operations(tmp_path: Path) -> None:
    """Two services on one PostgreSQL database, as two replicas have: they make the tables together, an upload
    started on A takes its bytes on either (two requests at one offset: one wins, the other is told the offset),
    and what one does, the other sees."""
    with pg.scratch_database() as name:
        a, b = bm25_only(tmp_path / "a", pg.url(name)), bm25_only(tmp_path / "b", pg.url(name))

        async def scenario() -> None:
            made = await asyncio.gather(a.create_store("alice", {"displayName": "A"}),
                                        b.create_store("alice", {"displayName": "B"}))  # fmt: skip
            store = made[0]["name"]
            assert {s["name"] for s in (await b.list_stores("alice", None, None))["fileSearchStores"]} == {
                m["name"] for m in made
            }
            text = b"Puffins nest in burrows on the cliffs of Skomer island."
            token = await a.start_upload("alice", store, {"displayName": "puffins"}, len(text), "text/plain", "")
            first = text[:10]
            raced = await asyncio.gather(a.upload_bytes(token, 0, first, False), b.upload_bytes(token, 0, first, False),
                                         return_exceptions=True)  # fmt: skip
            assert None in raced and any(isinstance(r, ApiError) and r.http_status == 400 for r in raced), raced
            operation = await b.upload_bytes(token, 10, text[10:], True)
            assert operation is not None and operation["done"]
            assert await a.get_operation("alice", operation["name"]) == operation
            assert titles(await a.search("alice", [store], "puffin burrows", 5, None)) == ["puffins"]
            await b.delete_document("alice", operation["response"]["documentName"], True)
            assert await a.search("alice", [store], "puffin burrows", 5, None) == []
            await refused(404, b.get_store("bob", store))

        try:
            asyncio.run(scenario())
        finally:
            a.close()
            b.close()
