"""Unit tests of the tools' policies: the address policy (with a resolver the test controls, so no DNS query
is sent), redirects re-checked at every hop, the local index's ranking, and the SearxNG provider."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from live import FIXTURES
from openinteractions.tools.google_search import SearxngSearch
from openinteractions.tools.net import AddressPolicy, Refused, SafeFetcher, address_problem
from openinteractions.tools.search_index import LocalIndex
from pages import json_api, site


@pytest.mark.parametrize(
    "address, problem",
    [
        ("10.0.0.1", "private"),
        ("10.255.1.2", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("0.0.0.0", "this network"),
        ("224.0.0.1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "CGNAT"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_address_policy(address: str, problem: str | None) -> None:
    import ipaddress

    found = address_problem(ipaddress.ip_address(address))
    assert found == problem if problem is None else problem in str(found)
    if problem is None:
        AddressPolicy().check(address)
    else:
        with pytest.raises(Refused, match=problem):
            AddressPolicy().check(address)


def test_allow_list() -> None:
    AddressPolicy(["127.0.0.1/32", "10.1.0.0/16"]).check("10.1.2.3")
    with pytest.raises(Refused):
        AddressPolicy(["127.0.0.1/32", "10.1.0.0/16"]).check("10.2.0.1")


def fetcher(resolutions: dict[str, list[str]], allow: list[str] | None = None) -> SafeFetcher:
    async def resolve(host: str, port: int) -> list[str]:
        return resolutions[host]

    return SafeFetcher(AddressPolicy(allow), resolver=resolve, timeout=5)


@pytest.mark.parametrize(
    "name, addresses",
    [
        ("intranet.example", ["10.0.0.7"]),
        ("metadata.example", ["169.254.169.254"]),
        ("mixed.example", ["93.184.216.34", "192.168.0.10"]),  # one bad answer is enough to refuse
        ("v6.example", ["fd12:3456::1"]),
    ],
)
def test_names_resolving_to_private_addresses_are_refused(name: str, addresses: list[str]) -> None:
    with pytest.raises(Refused):
        asyncio.run(fetcher({name: addresses}).fetch(f"http://{name}/"))


@pytest.mark.parametrize("url", ["ftp://10.0.0.1/", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "gopher://x/"])
def test_only_plain_http_urls(url: str) -> None:
    with pytest.raises(Refused):
        asyncio.run(fetcher({}, ["127.0.0.0/8"]).fetch(url))


def test_redirects_are_checked_at_every_hop() -> None:
    with site() as url:
        host = url.removeprefix("http://").split(":")[0]
        port = url.rsplit(":", 1)[1]
        allowed = fetcher({"pages.test": [host]}, ["127.0.0.1/32"])
        fetched = asyncio.run(allowed.fetch(f"http://pages.test:{port}/redirect-page"))
        assert fetched.status_code == 200 and b"7341" in fetched.body
        assert fetched.final_url == f"http://pages.test:{port}/page"
        for hop in ("/redirect-private", "/redirect-metadata"):
            with pytest.raises(Refused):
                asyncio.run(allowed.fetch(f"{url}{hop}"))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    store = LocalIndex(tmp_path_factory.mktemp("index") / "search.db")
    assert store.add([FIXTURES / "corpus"]) == 4
    yield store
    store.close()


@pytest.mark.parametrize(
    "query, best",
    [
        ("Caucasus volcano", "elbrus.md"),
        ("first ascent Balmat", "mont-blanc.md"),
        ("Paris weather in July", "paris.html"),
        ("how do I sort a list in python", "python.txt"),
        ("summit metres", {"elbrus.md", "mont-blanc.md"}),
    ],
)
def test_local_search_ranks_the_right_file_first(index: LocalIndex, query: str, best: str | set[str]) -> None:
    hits = index.search(query)
    names = [hit.url.rsplit("/", 1)[1] for hit in hits]
    if isinstance(best, set):
        assert set(names[: len(best)]) == best
    else:
        assert names[0] == best
    assert hits[0].snippet and hits[0].title


def test_local_index_reads_html_titles_and_reindexes(index: LocalIndex, tmp_path: Path) -> None:
    titles = dict(index.documents())
    assert titles[(FIXTURES / "corpus" / "paris.html").resolve().as_uri()] == "The climate of Paris"
    assert "Home | Weather" not in index.search("climate Paris")[0].snippet  # the menu is not content
    assert index.add([FIXTURES / "corpus" / "python.txt"]) == 1
    assert len(index.documents()) == 4
    assert index.search("zzz-nothing-matches") == [] and index.search("!!!") == []


@contextmanager
def fake_searxng(seen: list[str]) -> Iterator[str]:
    def answer(path: str) -> dict[str, Any]:
        seen.append(path)
        return {
            "results": [
                {"url": "https://example.org/elbrus", "title": "Elbrus", "content": "5,642 m", "score": 2.0},
                {"url": "https://example.org/blanc", "title": "Mont Blanc", "content": "4,805 m", "score": 1.0},
                {"title": "no url"},
            ]
        }

    with json_api(answer) as url:
        yield url


def test_searxng_provider() -> None:
    seen: list[str] = []
    with fake_searxng(seen) as url:
        hits = asyncio.run(SearxngSearch(url, 5).search("highest mountain", 1, "web_search"))
    assert [(h.url, h.title, h.snippet) for h in hits] == [("https://example.org/elbrus", "Elbrus", "5,642 m")]
    assert seen[0].startswith("/search?q=highest+mountain&format=json&categories=general")
