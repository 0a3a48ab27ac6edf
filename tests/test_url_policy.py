"""url_context's URL policy: addresses that carry another address, cloud host endpoints, and bodies that
inflate without bound. Addresses are judged by the policy functions alone and names come from a resolver the
test controls, so nothing here connects anywhere but to its own server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openinteractions.tools.net import AddressPolicy, Refused, SafeFetcher, Undecodable, address_problem


@pytest.mark.parametrize(
    "address, problem",
    [
        # 6to4 (2002::/16): refused whatever it carries, and the reason names a carried address off limits
        ("2002:a9fe:a9fe::1", "6to4 address of 169.254.169.254, the cloud metadata service"),
        ("2002:0a00:0001::1", "6to4 address of 10.0.0.1, a private address"),
        ("2002:7f00:0001::1", "6to4 address of 127.0.0.1, a loopback address"),
        ("2002:0808:0808::1", "6to4 address (deprecated tunnel)"),
        # Teredo (2001::/32): the client's address is stored inverted
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo address of 10.0.0.1, a private address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo address of 192.0.2.45, a documentation address"),
        # NAT64: judged by the IPv4 address it translates to
        ("64:ff9b::a00:1", "NAT64 address of 10.0.0.1, a private address"),
        ("64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254"),
        ("64:ff9b:1::7f00:1", "local-use NAT64 address"),
        ("64:ff9b:1:a9fe:a9:fe00:808:808", "local-use NAT64 address"),  # 169.254.169.254 in a /48's layout
        ("64:ff9b:1::808:808", "local-use NAT64 address"),
        ("::a9fe:a9fe", "IPv4-compatible address (deprecated) of 169.254.169.254"),
        ("::ffff:169.254.169.254", "cloud metadata service"),
        ("fec0::1", "site-local address"),
        ("168.63.129.16", "Azure's host endpoint"),
        ("100.100.100.200", "Alibaba Cloud's metadata service"),
        ("fd00:ec2::254", "AWS's IPv6 metadata service"),
        ("169.254.170.2", "link-local"),  # ECS task metadata
        ("100.64.0.1", "shared (CGNAT) address"),
        ("192.0.0.192", "IETF protocol assignment"),  # Oracle Cloud Classic's metadata
        ("198.18.0.1", "benchmarking"),
        ("3fff::1", "documentation"),
        ("255.255.255.255", "reserved"),
    ],
)
def test_addresses_that_reach_inside_are_refused(address: str, problem: str) -> None:
    found = address_problem(ipaddress.ip_address(address))
    assert found is not None and problem in found, found
    with pytest.raises(Refused, match=re.escape(problem)):
        AddressPolicy().check(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808", "1.1.1.1", "::", "::1"])
def test_public_addresses_pass_and_no_others(address: str) -> None:
    public = address not in ("::", "::1")
    assert (address_problem(ipaddress.ip_address(address)) is None) == public


@pytest.mark.parametrize("answer", ["fe80::1%eth0", "fe80::1%2", "not-an-address"])
def test_odd_resolver_answers_are_refused(answer: str) -> None:
    with pytest.raises(Refused):
        AddressPolicy(["fe80::/10"] if answer == "not-an-address" else None).check(answer)


def test_the_allow_list_covers_ipv4_mapped_addresses() -> None:
    AddressPolicy(["127.0.0.1/32"]).check("::ffff:127.0.0.1")
    with pytest.raises(Refused):
        AddressPolicy(["127.0.0.1/32"]).check("::ffff:127.0.0.2")


def zeros_bomb(inflated_mib: int, wbits: int) -> bytes:
    """A compressed stream of ``inflated_mib`` MiB of zeros, built from one compressed MiB repeated: after a full
    flush, compressed data refers to nothing before it. The stream has no end (no trailer)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1 << 20)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + again * (inflated_mib - 1)


def packed(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


PAGE = b"<html><title>t</title><p>" + b"words " * 2000 + b"</p></html>"
GZIP, ZLIB, RAW = zlib.MAX_WBITS | 16, zlib.MAX_WBITS, -zlib.MAX_WBITS
BODIES: dict[str, tuple[str, bytes]] = {
    "/gzip-bomb": ("gzip", zeros_bomb(1024, GZIP)),  # 1 MiB that inflates to 1 GiB
    "/deflate-bomb": ("deflate", zeros_bomb(1024, ZLIB)),
    "/raw-deflate-bomb": ("deflate", zeros_bomb(1024, RAW)),
    "/gzip": ("gzip", packed(PAGE, GZIP)),
    "/deflate": ("deflate", packed(PAGE, ZLIB)),
    "/raw-deflate": ("deflate", packed(PAGE, RAW)),
    "/brotli": ("br", b"\x0b\x02\x80hello\x03"),
    "/stacked": ("gzip, gzip", packed(packed(PAGE, GZIP), GZIP)),
    "/corrupt": ("gzip", b"\x1f\x8b\x08\x00" + b"\xff" * 64),
    "/big": ("identity", bytes(300_000)),
}


@contextmanager
def compressing_site(seen: list[str]) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Accept-Encoding", ""))
            encoding, body = BODIES[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with suppress(ConnectionError):  # the fetcher stopped reading: what these tests want
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    with compressing_site(seen) as port:
        yield port, seen


def fetch(port: int, path: str, max_bytes: int = 64 * 1024) -> tuple[bytes, bool]:
    fetcher = SafeFetcher(AddressPolicy(["127.0.0.1/32"]), max_bytes=max_bytes, timeout=30)
    fetched = asyncio.run(fetcher.fetch(f"http://127.0.0.1:{port}{path}"))
    return fetched.body, fetched.truncated


@pytest.mark.parametrize("path", ["/gzip-bomb", "/deflate-bomb", "/raw-deflate-bomb"])
def test_a_compression_bomb_is_decoded_only_as_far_as_max_bytes(site: tuple[int, list[str]], path: str) -> None:
    port, seen = site
    tracemalloc.start()
    started, cpu = time.monotonic(), time.thread_time()
    try:
        body, truncated = fetch(port, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert body == bytes(64 * 1024) and truncated
    # Inflating the whole 1 GiB takes seconds and the memory of what it inflates; decoding 64 KiB does not.
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held while decoding"
    assert time.thread_time() - cpu < 1.0 and time.monotonic() - started < 10.0
    assert seen[-1] == "gzip, deflate"  # only what can be decoded with bounded output is asked for


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/raw-deflate"])
def test_compressed_pages_are_decoded(site: tuple[int, list[str]], path: str) -> None:
    assert fetch(site[0], path) == (PAGE, False)


def test_a_plain_body_is_cut_at_max_bytes(site: tuple[int, list[str]]) -> None:
    assert fetch(site[0], "/big", max_bytes=100_000) == (bytes(100_000), True)


@pytest.mark.parametrize(
    "path, error",
    [("/brotli", "'br' is not decoded"), ("/stacked", "stacked"), ("/corrupt", "does not decode")],
)
def test_bodies_that_cannot_be_decoded_boundedly_are_errors(site: tuple[int, list[str]], path: str, error: str) -> None:
    with pytest.raises(Undecodable, match=error):
        fetch(site[0], path)
