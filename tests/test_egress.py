"""The server's one way out (egress.py): each purpose's policy, the decision taken before any connection, the
record of every attempt, and that url_context, SearxNG and the openai backend all connect through it. Names
come from resolvers the tests control and connections that are allowed go to servers on 127.0.0.1 or to
openers that open nothing."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live import free_port
from openinteractions.backends.openai.backend import OpenAIBackend
from openinteractions.backends.openai.options import parse_options
from openinteractions.egress import RECORDER, Egress, OriginPolicy, Recorder, Refused, Resolver
from openinteractions.tools.google_search import SearxngSearch
from openinteractions.tools.net import AddressPolicy, SafeFetcher
from pages import site

SRC = Path(__file__).parents[1] / "src" / "openinteractions"


def resolver(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown")
        return table[host]

    return resolve


class Opener:
    """Stands in for a connection: records the addresses it was asked to connect to, opens nothing."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.addresses: list[str] = []
        self.failing = failing

    async def __call__(self, address: str) -> str:
        self.addresses.append(address)
        if address in self.failing:
            raise ConnectionRefusedError(f"{address} refused")
        return f"connection to {address}"


def recorded(recorder: Recorder) -> list[tuple[str, str, str | None]]:
    attempts: list[tuple[str, str, str | None]] = []
    recorder.observe(lambda a: attempts.append((a.host, a.outcome, a.address or a.reason)))
    return attempts


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], ["93.184.216.34", "192.168.0.10"], ["2002:a9fe:a9fe::1"], ["168.63.129.16"]],
)
def test_a_refused_destination_is_recorded_and_never_connected_to(addresses: list[str]) -> None:
    recorder = Recorder()
    attempts = recorded(recorder)
    egress = Egress("url_context", AddressPolicy(), resolver({"inside.test": addresses}), recorder)
    opener = Opener()
    with pytest.raises(Refused, match=" is "):
        asyncio.run(egress.connect("inside.test", 80, opener))
    assert opener.addresses == []
    assert [(host, outcome) for host, outcome, _ in attempts] == [("inside.test", "refused")]
    assert recorder.counts == {("url_context", "refused"): 1}


def test_an_allowed_connection_is_recorded_and_goes_to_the_checked_address() -> None:
    recorder = Recorder()
    attempts = recorded(recorder)
    egress = Egress(
        "upstream", OriginPolicy(["http://GPU.test:8000/v1"]), resolver({"gpu.test": ["10.0.0.5"]}), recorder
    )
    opener = Opener()
    assert asyncio.run(egress.connect("gpu.test", 8000, opener)) == "connection to 10.0.0.5"
    assert opener.addresses == ["10.0.0.5"]
    assert attempts == [("gpu.test", "connect", "10.0.0.5")]


def test_addresses_are_tried_in_turn_and_each_attempt_is_recorded() -> None:
    recorder = Recorder()
    attempts = recorded(recorder)
    table = {"two.test": ["127.0.0.2", "127.0.0.3"]}
    egress = Egress("upstream", OriginPolicy(["http://two.test"]), resolver(table), recorder)
    opener = Opener(failing=frozenset({"127.0.0.2"}))
    assert asyncio.run(egress.connect("two.test", 80, opener)) == "connection to 127.0.0.3"
    assert attempts == [("two.test", "connect", "127.0.0.2"), ("two.test", "connect", "127.0.0.3")]


def test_a_name_that_does_not_resolve_is_recorded() -> None:
    recorder = Recorder()
    attempts = recorded(recorder)
    egress = Egress("url_context", AddressPolicy(), resolver({}), recorder)
    with pytest.raises(OSError, match="unknown"):
        asyncio.run(egress.connect("nowhere.test", 80, Opener()))
    assert attempts[0][:2] == ("nowhere.test", "unresolved")


@pytest.mark.parametrize(
    "host, port, allowed",
    [
        ("gpu.test", 8000, True),
        ("GPU.Test", 8000, True),
        ("gpu.test", 8001, False),
        ("gpu.test.evil", 8000, False),
        ("search.test", 443, True),
        ("search.test", 80, False),
        ("::1", 9000, True),
        ("127.0.0.1", 9000, False),
        ("169.254.169.254", 80, False),
    ],
)
def test_operator_configured_destinations_are_the_only_ones(host: str, port: int, allowed: bool) -> None:
    policy = OriginPolicy(["http://gpu.test:8000/v1", "https://search.test", "http://[::1]:9000/v1"])
    if allowed:
        policy.permit(host, port, ["10.0.0.5"])  # operators may point at private addresses
    else:
        with pytest.raises(Refused, match="not a configured destination"):
            policy.permit(host, port, ["10.0.0.5"])


def connections(purpose: str) -> int:
    return RECORDER.counts[purpose, "connect"]


def test_url_context_connects_through_the_egress() -> None:
    with site() as url:
        port = int(url.rsplit(":", 1)[1])
        fetcher = SafeFetcher(AddressPolicy(["127.0.0.1/32"]), resolver=resolver({"pages.test": ["127.0.0.1"]}))
        before = connections("url_context")
        fetched = asyncio.run(fetcher.fetch(f"http://pages.test:{port}/redirect-page"))
        assert fetched.status_code == 200 and b"7341" in fetched.body
        assert connections("url_context") == before + 2  # the redirect and the page: one client per fetch


@pytest.fixture
def searxng() -> Iterator[str]:
    with site() as url:
        yield url


def test_searxng_connects_through_the_egress_and_only_to_its_host(searxng: str) -> None:
    search = SearxngSearch(searxng, 5)
    before = connections("search")
    with pytest.raises(httpx.HTTPStatusError):  # the little site has no /search: a 404, but it connected
        asyncio.run(search.search("q", 1, "web_search"))
    assert connections("search") == before + 1
    other = searxng.rsplit(":", 1)[0] + f":{free_port()}"

    async def elsewhere() -> None:
        async with search.egress.client() as client:
            await client.get(other)

    with pytest.raises(Refused, match="not a configured destination"):
        asyncio.run(elsewhere())


@pytest.mark.parametrize("transport", ["lean", "httpx"])
def test_the_openai_backend_connects_through_the_egress(transport: str) -> None:
    with site() as url:
        options = {"base_urls": [f"{url}/v1", f"{url}/v2"], "http_transport": transport}
        backend = OpenAIBackend(parse_options(options))

        async def check() -> None:
            try:
                await backend.pool.check_all()  # GET /v1/models, /v2/models: 404s, after connecting
            finally:
                await backend.aclose()

        before = connections("upstream")
        asyncio.run(check())
        assert 1 <= connections("upstream") - before <= 2
        assert backend.egress.policy.origins == {("127.0.0.1", int(url.rsplit(":", 1)[1]))}  # type: ignore[attr-defined]


# Calls that open a connection or look a name up; only egress.py may make them.
CONNECTING = re.compile(
    r"\b(open_connection|create_connection|create_datagram_endpoint|sock_connect|getaddrinfo|urlopen|"
    r"socket\.socket|httpx\.(Async)?Client|(Async)?HTTPTransport|(Async)?ConnectionPool|AnyIOBackend)\s*\("
)


def test_only_the_egress_module_connects() -> None:
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "egress.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CONNECTING.search(line)
    ]
    assert found == []
    assert CONNECTING.search((SRC / "egress.py").read_text())  # the pattern does find what it looks for
