"""The test suite's network guard, in two layers.

1. The kernel. scripts/test runs pytest through scripts/isolated, in a network namespace whose only interface
   is loopback: nothing the suite starts (servers on uvloop, node, fake upstreams) can send a packet off the
   machine, whatever API it uses. ``isolation_problem`` checks that state by reading it (interfaces, routes,
   how names are looked up), never by trying to send anything.
2. The server's egress point. A server started with ``server_env(log)`` loads ``sitecustomize`` from this
   folder, which appends every attempt its egress point (``openinteractions/egress.py``) makes, allowed,
   refused or unresolved, to ``log``. ``attempts(log)`` reads them back, so a test can show what the server
   tried, that the policy refused it before connecting, and that it connected nowhere but loopback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

DIR = Path(__file__).parent
OPT_OUT = "OPENINTERACTIONS_TEST_NETWORK"  # "host": run on the host's network (scripts/isolated says why)
LOADED = "netguard loaded"


def isolation_problem() -> str | None:
    """What could let a packet leave this process's network namespace, or None when nothing can."""
    return judge(
        [name for _, name in socket.if_nameindex()],
        Path("/proc/net/route").read_text(),
        Path("/proc/net/ipv6_route").read_text(),
        _read("/etc/nsswitch.conf"),
        Path("/var/run/nscd/socket").exists(),
    )


def judge(interfaces: list[str], ipv4_routes: str, ipv6_routes: str, nsswitch: str, nscd: bool) -> str | None:
    if interfaces != ["lo"]:
        return f"network interfaces besides loopback: {interfaces}"
    ipv4 = ipv4_routes.splitlines()[1:]  # after the header line
    if ipv4:
        return f"IPv4 routes: {ipv4}"
    ipv6 = [line for line in ipv6_routes.splitlines() if line.split()[-1] != "lo"]
    if ipv6:
        return f"IPv6 routes through devices other than lo: {ipv6}"
    # A name lookup handed to a daemon outside the namespace would be sent from there.
    if nscd:
        return "name lookups can reach nscd through /var/run/nscd/socket"
    hosts = [line.split()[1:] for line in nsswitch.splitlines() if line.split()[:1] == ["hosts:"]]
    if hosts and set(hosts[0]) - {"files", "dns", "myhostname"}:
        return f"name lookups go through other services than files and dns: {hosts[0]}"
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""


def require_isolation() -> None:
    problem = isolation_problem()
    if problem is None:
        return
    if os.environ.get(OPT_OUT) == "host":
        pytest.skip(f"not isolated ({OPT_OUT}=host): {problem}")
    pytest.fail(f"the tests must run without a network (scripts/test does it; or scripts/isolated COMMAND): {problem}")


def server_env(log: Path) -> dict[str, str]:
    """The environment of a server whose egress attempts are written to ``log``."""
    return {"PYTHONPATH": str(DIR), "NETGUARD_LOG": str(log)}


def attempts(log: Path) -> list[dict[str, Any]]:
    """The attempts recorded in ``log``; fails unless the guard was loaded (an empty log proves nothing)."""
    lines = log.read_text().splitlines() if log.exists() else []
    assert LOADED in lines, f"the network guard was not loaded: {log}"
    return [json.loads(line) for line in lines if line != LOADED]  # one LOADED line per process started


def off_loopback(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The connections made to an address that is not loopback."""
    return [a for a in recorded if a["outcome"] == "connect" and not ipaddress.ip_address(a["address"]).is_loopback]


def no_packets_left(log: Path) -> None:
    """The server connected nowhere but loopback, and nothing it did could have sent a packet elsewhere."""
    recorded = attempts(log)
    assert not off_loopback(recorded), off_loopback(recorded)
    require_isolation()
