"""Fetching URLs that a model chose, without letting it reach what it must not (SSRF), or spend what it must not.

Connections go through the server's egress point (``egress.py``) with ``AddressPolicy``: every hop's host is
resolved and every address it resolves to is checked; anything but a public address is refused unless an
allow-listed network contains it. The connection then goes to a checked address (the host name travels in
the Host header and TLS SNI), so a second DNS answer cannot swap in another. Redirects are followed by hand,
each one checked again. Size, time and redirect count are bounded, and so is decompression: only gzip and
deflate are asked for, and no more than ``max_bytes`` are ever decoded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from ..egress import Egress, Refused, Resolver, system_resolver

__all__ = ["AddressPolicy", "Fetched", "Refused", "SafeFetcher", "TooManyRedirects", "Undecodable", "address_problem"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ACCEPT_ENCODING = "gzip, deflate"  # what _decoder can decode with bounded output; never br or zstd


class TooManyRedirects(Exception):
    pass


class Undecodable(ValueError):
    """A body in a content encoding that is not decoded, or corrupt."""


def _networks(table: dict[str, str]) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return [(ipaddress.ip_network(net), what) for net, what in table.items()]


# Services of the cloud host, on addresses that are public or that deserve their name in the reason.
_CLOUD_ENDPOINTS = _networks(
    {
        "169.254.169.254/32": "the cloud metadata service (link-local)",
        "168.63.129.16/32": "Azure's host endpoint (WireServer)",
        "100.100.100.200/32": "Alibaba Cloud's metadata service",
        "fd00:ec2::254/128": "AWS's IPv6 metadata service",
    }
)
# The special-purpose networks of the IANA registries that are not globally reachable, so that the verdict
# does not depend on the Python patch release (whose is_private/is_global lists have changed).
_SPECIAL = _networks(
    {
        "0.0.0.0/8": "a 'this network' address",
        "10.0.0.0/8": "a private address",
        "100.64.0.0/10": "a shared (CGNAT) address",
        "127.0.0.0/8": "a loopback address",
        "169.254.0.0/16": "a link-local address",
        "172.16.0.0/12": "a private address",
        "192.0.0.0/24": "an IETF protocol assignment",
        "192.0.2.0/24": "a documentation address",
        "192.88.99.0/24": "a 6to4 relay address (deprecated)",
        "192.168.0.0/16": "a private address",
        "198.18.0.0/15": "a benchmarking address",
        "198.51.100.0/24": "a documentation address",
        "203.0.113.0/24": "a documentation address",
        "224.0.0.0/4": "a multicast address",
        "240.0.0.0/4": "a reserved address",
        "::/128": "an unspecified address",
        "::1/128": "a loopback address",
        "::/8": "a reserved address",
        "100::/64": "a discard-only address",
        "2001::/23": "an IETF protocol assignment",
        "2001:db8::/32": "a documentation address",
        "3fff::/20": "a documentation address",
        "5f00::/16": "a segment routing (SRv6) address",
        "fc00::/7": "a private address",
        "fe80::/10": "a link-local address",
        "fec0::/10": "a site-local address (deprecated)",
        "ff00::/8": "a multicast address",
    }
)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the IPv4 address is the last 32 bits
# The local-use prefix (RFC 8215) is an operator's own translator, free to reach private IPv4 addresses, and a /48
# carries the IPv4 address in bits 48-87, not at the end: refused whatever it carries, unless allow-listed.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def address_problem(ip: IPAddress) -> str | None:
    """Why an address is off limits by default (a phrase: "a private address"), or None for a public one.
    IPv6 addresses that carry an IPv4 address are judged by it too."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_problem(ip)
        if embedded != "":
            return embedded
    for network, what in _CLOUD_ENDPOINTS + _SPECIAL:
        if ip in network:
            return what
    for what, flagged in (
        ("a loopback address", ip.is_loopback),
        ("an unspecified address", ip.is_unspecified),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
    ):
        if flagged:
            return what
    return None if ip.is_global else "not a globally routable address"


def _embedded_problem(ip: ipaddress.IPv6Address) -> str | None:
    """The verdict on an address that carries an IPv4 address, or "" for one that does not."""
    if ip in _MAPPED:  # the IPv4 address itself, as an IPv6 socket sees it
        return address_problem(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _NAT64_LOCAL:
        return "a local-use NAT64 address (an operator's own translator)"
    if ip in _NAT64:  # translated to the IPv4 address: public ones are fine
        inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        problem = address_problem(inner)
        return f"a NAT64 address of {inner}, {problem}" if problem else None
    if ip in _COMPATIBLE and int(ip) > 1:
        return f"an IPv4-compatible address (deprecated) of {ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)}"
    # Deprecated tunnels, refused whatever they carry: one to the server's own public IPv4 address would
    # reach the server itself. The reason names a carried address that is off limits on its own.
    if ip in _SIXTOFOUR and ip.sixtofour is not None:
        problem = address_problem(ip.sixtofour)
        return f"a 6to4 address of {ip.sixtofour}, {problem}" if problem else "a 6to4 address (deprecated tunnel)"
    if ip in _TEREDO and ip.teredo is not None:
        for inner in reversed(ip.teredo):  # the client's address, then the server's
            if problem := address_problem(inner):
                return f"a Teredo address of {inner}, {problem}"
        return "a Teredo address (deprecated tunnel)"
    return ""


class AddressPolicy:
    """The SSRF policy of model-chosen URLs: public addresses, and those in ``allow`` (operator-configured)."""

    def __init__(self, allow: list[str] | None = None) -> None:
        self._allow = [ipaddress.ip_network(net, strict=False) for net in allow or []]

    def check(self, ip_text: str) -> None:
        try:
            ip = ipaddress.ip_address(ip_text.split("%", 1)[0])  # without a scope (fe80::1%eth0)
        except ValueError:
            raise Refused(f"{ip_text!r} is not an IP address") from None
        if ip.version == 6 and ip in _MAPPED:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if any(ip in net for net in self._allow):
            return
        problem = address_problem(ip)
        if problem is not None:
            raise Refused(f"{ip_text} is {problem}")

    def permit(self, host: str, port: int, addresses: Sequence[str]) -> None:
        for address in addresses:  # one bad answer is enough to refuse the name
            self.check(address)


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
        self.egress = Egress("url_context", policy, resolver)
        self._headers = {"user-agent": user_agent, "accept": "*/*", "accept-encoding": ACCEPT_ENCODING}

    async def fetch(self, url: str) -> Fetched:
        async with (
            asyncio.timeout(self.timeout),
            self.egress.client(timeout=self.timeout, follow_redirects=False) as client,
        ):
            current = url
            for _ in range(self.max_redirects + 1):
                _check_url(current)
                response = await client.send(client.build_request("GET", current, headers=self._headers), stream=True)
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

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """At most ``max_bytes`` of the body, decoded, and whether there was more. The raw bytes read are
        bounded by the same number, and decoding stops as soon as that much came out."""
        decode = _decoder(response.headers.get("content-encoding", ""))
        body = bytearray()
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            body += decode(chunk, self.max_bytes - len(body))
            if len(body) >= self.max_bytes or received >= self.max_bytes:
                return bytes(body[: self.max_bytes]), True
        return bytes(body), False


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"only http and https URLs can be fetched, not {url!r}")
    if parts.username or parts.password:
        raise Refused("URLs with credentials are not fetched")


def _decoder(content_encoding: str) -> Callable[[bytes, int], bytes]:
    """A function that decodes the next raw piece of the body into at most the given number of bytes."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return lambda data, room: data[:room]
    if len(codings) > 1:
        raise Undecodable(f"stacked content encodings are not decoded: {content_encoding}")
    if codings[0] in ("gzip", "x-gzip"):
        return _Inflater(zlib.MAX_WBITS | 16)
    if codings[0] == "deflate":
        return _Inflater(zlib.MAX_WBITS, raw_fallback=True)
    raise Undecodable(f"content encoding {codings[0]!r} is not decoded")


class _Inflater:
    """zlib decoding that never produces more than it is asked for (``max_length``): a body of a few KB that
    inflates to gigabytes costs what ``max_bytes`` allows, not what the body holds."""

    def __init__(self, wbits: int, raw_fallback: bool = False) -> None:
        self._zlib = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback  # "deflate" is raw deflate from some servers, not zlib's format

    def __call__(self, data: bytes, room: int) -> bytes:
        if room <= 0:  # zlib reads a max_length of 0 as "no limit"
            return b""
        if self._raw_fallback:  # the first piece tells which of the two it is
            self._raw_fallback = False
            try:
                return self._zlib.decompress(data, room)
            except zlib.error:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            return self._zlib.decompress(data, room)
        except zlib.error as exc:
            raise Undecodable(f"the body does not decode: {exc}") from None
