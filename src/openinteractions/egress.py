"""The server's one way out: every outbound connection it makes is opened here.

The parts of the server that connect out: url_context, to pages a model chose; MCP servers a request names;
webhook deliveries, to URIs API callers chose; the SearxNG search provider; the openai backend, to its upstreams
(requests and health checks); the image, speech, transcription and embeddings servers configured; the
OpenTelemetry collector; and the chat client, to the server it talks to. Each holds an ``Egress`` made with its
purpose and its policy: for model- and caller-chosen URLs the SSRF policy (``tools.net.AddressPolicy``, each with
its own allow-list), for configured services ``OriginPolicy``, the hosts the operator configured and nothing
else. ``Egress.connect`` resolves the
host, asks the policy about the name and every address it resolved to, records the decision, and only then
connects, to an address that was checked, so a second DNS answer cannot swap in another. Nothing else in the
server opens a connection (``tests/test_egress.py`` reads the source to keep it so).

Every attempt, allowed or not, is counted, logged (``openinteractions.egress``) and handed to the observers
registered with ``RECORDER.observe`` (the test suite's network guard is one). The check is per connection: a
kept-alive upstream connection pays it once, not per request or token.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, Literal, Protocol, TypeVar

import httpcore
import httpx

logger = logging.getLogger(__name__)

T = TypeVar("T")
Resolver = Callable[[str, int], Awaitable[list[str]]]
Outcome = Literal["connect", "refused", "unresolved"]


class Refused(Exception):
    """A policy forbids the connection; ``reason`` says why. Raised before any packet is sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Policy(Protocol):
    def permit(self, host: str, port: int, addresses: Sequence[str]) -> None:
        """Raise ``Refused`` unless connecting to ``host``:``port``, which resolved to ``addresses``, is allowed."""


@dataclass(frozen=True)
class Attempt:
    purpose: str
    host: str
    port: int
    outcome: Outcome
    address: str | None = None  # with "connect": the address connected to
    reason: str = ""


class Recorder:
    """Counts, logs and reports every attempt of the process."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, Outcome]] = Counter()
        self._observers: list[Callable[[Attempt], None]] = []

    def observe(self, observer: Callable[[Attempt], None]) -> None:
        self._observers.append(observer)

    def record(self, attempt: Attempt) -> None:
        self.counts[attempt.purpose, attempt.outcome] += 1
        where = f"{attempt.purpose}: {attempt.host}:{attempt.port}"
        if attempt.outcome == "connect":
            logger.debug("%s: connecting at %s", where, attempt.address)
        elif attempt.outcome == "unresolved":
            logger.info("%s: no connection: %s", where, attempt.reason)
        else:
            logger.warning("%s: refused: %s", where, attempt.reason)
        for observer in self._observers:
            observer(attempt)


RECORDER = Recorder()


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def url_origin(url: httpx.URL | str) -> tuple[str, int]:
    """The (host, port) a URL connects to, the host lower-cased and in its ASCII (IDNA) form."""
    url = httpx.URL(url)
    return url.raw_host.decode("ascii").lower(), url.port or (443 if url.scheme == "https" else 80)


class OriginPolicy:
    """Destinations the operator configured (upstreams, a SearxNG instance): these hosts and ports, at whatever
    addresses they resolve to, private ones included, and nowhere else."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.origins = frozenset(url_origin(url) for url in urls)

    def permit(self, host: str, port: int, addresses: Sequence[str]) -> None:
        if (host.lower(), port) not in self.origins:
            raise Refused(f"{host}:{port} is not a configured destination")


class Egress:
    def __init__(
        self, purpose: str, policy: Policy, resolver: Resolver = system_resolver, recorder: Recorder = RECORDER
    ) -> None:
        self.purpose = purpose
        self.policy = policy
        self._resolve = resolver
        self._recorder = recorder

    async def connect(
        self,
        host: str,
        port: int,
        opener: Callable[[str], Awaitable[T]],
        failures: tuple[type[Exception], ...] = (OSError,),
        timeout: float | None = None,
    ) -> T:
        """``opener(address)``'s connection to ``host``:``port``, if the policy allows it: the addresses the host
        resolves to are tried in turn (the next one after a failure in ``failures``). ``timeout`` bounds the
        name resolution; the opener bounds its own connecting. Raises ``Refused`` (before connecting) or
        ``OSError`` (the name does not resolve)."""
        host = host.strip("[]")
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._addresses(host, port)
        except (OSError, TimeoutError) as exc:
            self._record(host, port, "unresolved", reason=f"does not resolve: {exc or type(exc).__name__}")
            raise
        try:
            self.policy.permit(host, port, addresses)
        except Refused as refused:
            self._record(host, port, "refused", reason=refused.reason)
            raise
        error: Exception | None = None
        for address in addresses:
            self._record(host, port, "connect", address)
            try:
                return await opener(address)
            except failures as exc:
                error = exc
        assert error is not None
        raise error

    async def open_stream(
        self, host: str, port: int, ssl: SSLContext | None = None, limit: int = 64 * 1024
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``asyncio.open_connection`` through this egress; TLS (SNI and the certificate check) uses the name."""

        async def opener(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            hostname = host if ssl is not None else None
            return await asyncio.open_connection(address, port, ssl=ssl, server_hostname=hostname, limit=limit)

        return await self.connect(host, port, opener)

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        addresses = await self._resolve(host, port)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
        return addresses

    def _record(self, host: str, port: int, outcome: Outcome, address: str | None = None, reason: str = "") -> None:
        self._recorder.record(Attempt(self.purpose, host, port, outcome, address, reason))

    def transport(self, limits: httpx.Limits | None = None) -> httpx.AsyncBaseTransport:
        """httpx's own transport, its connections opened through this egress."""
        return _EgressTransport(self, limits or httpx.Limits())

    def client(self, transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> httpx.AsyncClient:
        """An httpx client on ``transport``, or on this egress's own. Proxy variables are never read."""
        limits = options.pop("limits", None)
        return httpx.AsyncClient(transport=transport or self.transport(limits), trust_env=False, **options)


class _Network(httpcore.AsyncNetworkBackend):
    """httpcore's network, with every TCP connection made by an Egress."""

    def __init__(self, egress: Egress) -> None:
        self._egress = egress
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async def opener(address: str) -> httpcore.AsyncNetworkStream:
            return await self._network.connect_tcp(address, port, timeout, local_address, socket_options)

        try:
            return await self._egress.connect(host, port, opener, (httpcore.ConnectError,), timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"{host} did not resolve within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("unix sockets are not a way out")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class _EgressTransport(httpx.AsyncHTTPTransport):
    def __init__(self, egress: Egress, limits: httpx.Limits) -> None:
        # httpx gives no way to pass its pool a network backend, so the pool its __init__ would make is made
        # here, with this egress as its network (tests/test_egress.py checks that connections go through it).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Network(egress),
        )


@functools.cache
def _ssl_context() -> SSLContext:
    """httpx's default context (certifi's CAs), made once: loading the CAs costs ~17 ms, every fetch."""
    return httpx.create_ssl_context(trust_env=False)
