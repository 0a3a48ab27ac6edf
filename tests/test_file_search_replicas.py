"""File search stores shared by replicas: two servers on one PostgreSQL database keep their stores, documents,
chunks, uploads and operations there, so that what one is given the other finds. A store made and filled on A
through google-genai is searched and cited on B; an upload started on A sends its bytes to B; a document deleted
on B is gone on A; another key sees nothing of the store on either. The database out of reach is a 503."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import errors
from google.genai._interactions import NotFoundError

import pg
from live import FIXTURES, LiveServer
from openinteractions.config import FileSearchSettings
from openinteractions.errors import ApiError
from openinteractions.filestores.service import FileStores
from openinteractions.tools.file_search import FileSearch, FileSearchTool
from pgcluster import private_cluster
from resuming import wait_for
from test_crash_tool import SlowEmbeddings
from test_file_search import ALICE, BOB, MARKDOWN, ask, client, start_upload, steps_of, upload
from test_tools import MODEL


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    with pg.scratch_database() as database:
        servers = []
        for name in "ab":
            (tmp_path / name).mkdir()
            sections = {
                "auth": {"api_keys": [ALICE, BOB]},
                f"models.{MODEL}": {"backend": "scripted", "inline": True, "script": FIXTURES / "seed.json"},
                "store": {"url": pg.url(database)},
                "tools.file_search": {"chunk_tokens": 40, "chunk_overlap_tokens": 8},
            }
            servers.append(LiveServer(tmp_path / name, sections, env={"HF_HUB_OFFLINE": "1"}))
        try:
            for server in servers:
                server.start()
            yield servers[0], servers[1]
        finally:
            for server in servers:
                server.stop()


def found_documents(interaction: dict[str, Any]) -> set[str]:
    return {item["document_uri"] for item in steps_of(interaction, "file_search_result")[0]["result"]}


def test_a_store_filled_on_one_replica_is_searched_and_changed_on_the_other(
    replicas: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    a, b = replicas
    notes = tmp_path / "bees.md"
    notes.write_text(MARKDOWN)
    with client(a) as alice_on_a:
        store = alice_on_a.file_search_stores.create(config={"display_name": "Hives"}).name
        assert store is not None
        bees = upload(alice_on_a, store, notes)
    tool = {"type": "file_search", "file_search_store_names": [store]}

    # Searched and cited on B.
    answer = "Bees keep the brood nest at about 35 degrees Celsius."
    interaction = ask(b, "how warm is a bee hive", answer, tool)
    top = steps_of(interaction, "file_search_result")[0]["result"][0]
    assert top["document_uri"] == bees and "35 degrees Celsius" in top["text"]
    cited = [a for a in steps_of(interaction, "model_output")[-1]["content"][0]["annotations"]
             if a["type"] == "file_citation"]  # fmt: skip
    assert cited[0]["document_uri"] == bees and "35 degrees Celsius" in cited[0]["source"]

    # An upload started on A sends its bytes to B, in two requests; its operation is read on B.
    data = b"Puffins nest in burrows on the cliffs of Skomer island. " * 20
    start = start_upload(a.url, store, len(data))
    on_b = start.headers["x-goog-upload-url"].replace(a.url, b.url)
    half = len(data) // 2
    sent = httpx.post(on_b, headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"},
                      content=data[:half], timeout=60)  # fmt: skip
    assert sent.headers["x-goog-upload-status"] == "active", sent.text
    final = httpx.post(on_b, headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": str(half)},
                       content=data[half:], timeout=60)  # fmt: skip
    assert final.headers["x-goog-upload-status"] == "final", final.text
    operation = httpx.get(f"{a.url}/v1beta/{final.json()['name']}", headers={"x-goog-api-key": ALICE}).json()
    assert operation["done"] and operation["response"]["sizeBytes"] == str(len(data))
    puffins = operation["response"]["documentName"]
    assert found_documents(ask(a, "where do puffins nest", "In burrows.", tool)) >= {puffins}

    # Another key sees nothing of the store on B.
    with client(b, BOB) as bob_on_b:
        assert store not in [s.name for s in bob_on_b.file_search_stores.list()]
        with pytest.raises(errors.ClientError) as refused:
            bob_on_b.file_search_stores.get(name=store)
        assert refused.value.code == 404
        with pytest.raises(NotFoundError, match="no such file search store"):
            bob_on_b.interactions.create(model=MODEL, input="hi", tools=[tool])  # type: ignore[list-item]

    # Deleted on B: gone on A.
    with client(b) as alice_on_b:
        alice_on_b.file_search_stores.documents.delete(name=bees, config={"force": True})
    assert bees not in found_documents(ask(a, "bee hive temperature", "Warm.", tool))
    with client(a) as alice_on_a:
        assert {d.name for d in alice_on_a.file_search_stores.documents.list(parent=store)} == {puffins}
    assert not any((server.data_dir / "file_search.db").exists() for server in (a, b))  # all of it in PostgreSQL


def test_the_database_out_of_reach_is_a_503_and_then_found_back(tmp_path: Path) -> None:
    """PostgreSQL stopped under the stores: each call is a 503 (which a client may retry), the file_search tool
    says so in its result, and once the database is back the same service carries on."""
    with private_cluster() as cluster:
        settings = FileSearchSettings(embeddings="none", chunk_tokens=16, chunk_overlap_tokens=0)
        stores = FileStores(settings, tmp_path, cluster.url())
        tool = FileSearch(stores, "o", FileSearchTool(file_search_store_names=["fileSearchStores/x"]))

        async def scenario() -> None:
            store = (await stores.create_store("o", {"displayName": "Kept"}))["name"]
            tool.store_names = [store]
            cluster.stop()
            with pytest.raises(ApiError) as refused:
                await stores.get_store("o", store)
            assert refused.value.http_status == 503
            outcome = await tool.run({"queries": ["anything"]})
            assert outcome.is_error and "database failed" in outcome.result[0]["error"]
            cluster.start()
            assert (await stores.get_store("o", store))["displayName"] == "Kept"
            assert (await tool.run({"queries": ["anything"]})).result == []

        try:
            asyncio.run(scenario())
        finally:
            stores.close()


def test_a_document_whose_indexing_replica_died_is_failed_by_another(tmp_path: Path) -> None:
    """A's indexing dies with A (the bytes were only there): B's sweep finds the indexing under a server that
    is gone, fails the document and ends its operation with an error; nothing stays pending."""
    embeddings = ThreadingHTTPServer(("127.0.0.1", 0), SlowEmbeddings)
    threading.Thread(target=embeddings.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{embeddings.server_address[1]}/v1"
    notes = tmp_path / "stalling.txt"
    notes.write_text("Herons stall beside the replica pond.")
    with pg.scratch_database() as database:
        servers = []
        for name in "ab":
            (tmp_path / name).mkdir()
            sections = {
                f"models.{MODEL}": {"backend": "scripted", "inline": True},
                "store": {"url": pg.url(database), "sweep_interval_seconds": 0.2},
                "tools.file_search": {"embeddings": "openai", "embeddings_url": url, "embeddings_model": "m",
                                      "wait_seconds": 0.1},
            }  # fmt: skip
            servers.append(LiveServer(tmp_path / name, sections).start())
        a, b = servers
        try:
            with client(a) as on_a:
                store = str(on_a.file_search_stores.create(config={"display_name": "pond"}).name)
                pending = on_a.file_search_stores.upload_to_file_search_store(
                    file_search_store_name=store, file=str(notes)
                )
            assert not pending.done
            wait_for(lambda: any("replica pond" in text for text in SlowEmbeddings.queries))
            a.kill()
            with client(b) as on_b:
                wait_for(lambda: bool(on_b.operations.get(pending).done), seconds=30)
                operation = on_b.operations.get(pending)
                documents = list(on_b.file_search_stores.documents.list(parent=store))
        finally:
            for server in servers:
                server.stop()
            embeddings.shutdown()
    assert operation.error is not None and "upload it again" in operation.error["message"]
    assert [str(d.state) for d in documents] == ["DocumentState.STATE_FAILED"]
