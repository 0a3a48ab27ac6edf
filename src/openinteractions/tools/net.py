"""Fetching URLs that a model chose, without letting it reach what it must not (SSRF).

Every hop is resolved first and every address it resolves to is checked: private, loopback, link-local,
multicast, reserved and unspecified addresses are refused unless an allow-listed network contains them. The
connection then goes to the checked address itself (the host name travels in the Host header and TLS SNI), so
a second DNS answer cannot swap in another address. Redirects are followed by hand, each one checked again.
Size, time and redirect count are bounded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Refused(Exception):
    """The URL may not be fetched; ``reason`` says why (it goes into the result as status ``unsafe``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyRedirects(Exception):
    pass


def address_problem(ip: IPAddress) -> str | None:
    """Why an address is off limits by default, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_problem(ip.ipv4_mapped)
    for kind, flagged in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flagged:
            return kind
    return None if ip.is_global else "not globally routable"


class AddressPolicy:
    def __init__(self, allow: list[str] | None = None) -> None:
        self._allow = [ipaddress.ip_network(net, strict=False) for net in allow or []]

    def check(self, ip_text: str) -> None:
        ip = ipaddress.ip_address(ip_text)
        if any(ip in net for net in self._allow):
            return
        problem = address_problem(ip)
        if problem is not None:
            raise Refused(f"{ip} is a {problem} address")


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass
class Fetched:
    url: str
    final_url: str
    status_code: int
    content_type: str
    body: bytes
    truncated: bool


class SafeFetcher:
    def __init__(
        self,
        policy: AddressPolicy,
        *,
        max_bytes: int = 2_000_000,
        timeout: float = 10.0,
        max_redirects: int = 5,
        resolver: Resolver = system_resolver,
        user_agent: str = "OpenInteractions-url-context/0.1",
    ) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._resolve = resolver
        self._user_agent = user_agent

    async def fetch(self, url: str) -> Fetched:
        async with (
            asyncio.timeout(self.timeout),
            httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False) as client,
        ):
            current = url
            for _ in range(self.max_redirects + 1):
                request = await self._request(client, current)
                response = await client.send(request, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.status_code in (301, 302, 303, 307, 308) and location:
                        current = urljoin(current, location)
                        continue
                    body, truncated = await self._read(response)
                finally:
                    await response.aclose()
                content_type = response.headers.get("content-type", "")
                return Fetched(url, current, response.status_code, content_type, body, truncated)
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")

    async def _request(self, client: httpx.AsyncClient, url: str) -> httpx.Request:
        """A request to the checked address of ``url``'s host, carrying the host name in Host and SNI."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"only http and https URLs can be fetched, not {url!r}")
        if parts.username or parts.password:
            raise Refused("URLs with credentials are not fetched")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await self._addresses(parts.hostname, port)
        for address in addresses:
            self.policy.check(address)
        pinned = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
        target = urlunsplit((parts.scheme, f"{pinned}:{port}", parts.path or "/", parts.query, ""))
        return client.build_request(
            "GET",
            target,
            headers={"host": parts.netloc, "user-agent": self._user_agent, "accept": "*/*"},
            extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
        )

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc}") from exc
        if not addresses:
            raise Refused(f"{host} does not resolve")
        return addresses

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
        return b"".join(chunks), False
