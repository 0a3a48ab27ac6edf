"""The guard that keeps the suite's packets on this machine (tests/netguard): the suite runs in a network
namespace whose only interface is loopback, the servers it starts share that namespace, and the guard's
judgement of what it reads holds. Nothing here tries to send anything: the state is read, not probed."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import netguard
from live import LiveServer

MODEL = "gemini-3-flash-preview"

# What a host with a network shows (this machine's own tables, outside the namespace).
HOST_IPV4 = """Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
"""
LO_IPV6 = """00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""  # noqa: E501
HOST_IPV6 = LO_IPV6 + (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 "
    "00000400 00000002 00000000 00000003     eth0\n"
)
NO_ROUTES = HOST_IPV4.splitlines()[0] + "\n"


def test_the_suite_runs_without_a_network() -> None:
    netguard.require_isolation()
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert Path("/proc/net/route").read_text().splitlines()[1:] == []


def test_a_server_under_test_shares_the_namespace_and_loads_the_guard(tmp_path: Path) -> None:
    log = tmp_path / "netguard.log"
    sections = {f"models.{MODEL}": {"backend": "scripted", "inline": True}}
    server = LiveServer(tmp_path, sections, env=netguard.server_env(log)).start()
    try:
        assert server.process is not None
        namespace = os.stat(f"/proc/{server.process.pid}/ns/net").st_ino
        assert namespace == os.stat("/proc/self/ns/net").st_ino
    finally:
        server.stop()
    assert netguard.attempts(log) == []  # loaded, and the server connected nowhere


@pytest.mark.parametrize(
    "interfaces, ipv4, ipv6, nsswitch, nscd, problem",
    [
        (["lo", "eth0"], NO_ROUTES, LO_IPV6, "", False, "interfaces besides loopback"),
        (["lo"], HOST_IPV4, LO_IPV6, "", False, "IPv4 routes"),
        (["lo"], NO_ROUTES, HOST_IPV6, "", False, "IPv6 routes"),
        (["lo"], NO_ROUTES, LO_IPV6, "", True, "nscd"),
        (["lo"], NO_ROUTES, LO_IPV6, "hosts: files resolve [!UNAVAIL=return] dns\n", False, "other services"),
        (["lo"], NO_ROUTES, LO_IPV6, "hosts:          files dns\n", False, None),
    ],
)
def test_the_guard_sees_a_way_out(
    interfaces: list[str], ipv4: str, ipv6: str, nsswitch: str, nscd: bool, problem: str | None
) -> None:
    found = netguard.judge(interfaces, ipv4, ipv6, nsswitch, nscd)
    assert found is None if problem is None else problem in str(found)


def test_a_connection_off_loopback_in_a_servers_record_fails_the_check(tmp_path: Path) -> None:
    log = tmp_path / "netguard.log"
    attempts = [
        {"purpose": "url_context", "host": "localhost", "port": 80, "outcome": "connect", "address": "127.0.0.1"},
        {"purpose": "url_context", "host": "10.0.0.1", "port": 80, "outcome": "refused", "address": None},
        {"purpose": "upstream", "host": "api.example", "port": 443, "outcome": "connect", "address": "2001:db8::1"},
    ]
    log.write_text("\n".join([netguard.LOADED, *map(json.dumps, attempts)]) + "\n")
    assert netguard.off_loopback(netguard.attempts(log)) == attempts[2:]
    with pytest.raises(AssertionError, match="2001:db8::1"):
        netguard.no_packets_left(log)


def test_an_empty_record_proves_nothing(tmp_path: Path) -> None:
    (tmp_path / "netguard.log").write_text("")
    with pytest.raises(AssertionError, match="not loaded"):
        netguard.attempts(tmp_path / "netguard.log")
