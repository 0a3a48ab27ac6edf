"""Loaded into a server under test (PYTHONPATH): any attempt to reach an address that is not loopback, or to
resolve a name other than localhost, fails and is recorded in $NETGUARD_LOG, so a test can prove that no
packet left the machine."""

import ipaddress
import os
import socket

_LOG = os.environ.get("NETGUARD_LOG", "")
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(what + "\n")


def _loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        try:
            return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
        except ValueError:
            return str(address[0]) == "localhost"
    return True  # unix sockets and the like


def connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        _record(f"connect {address}")
        raise ConnectionRefusedError(f"netguard: refused a connection to {address}")
    return _connect(self, address)


def connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        _record(f"connect {address}")
        return 111
    return _connect_ex(self, address)


def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        if name not in ("localhost", "None"):
            _record(f"resolve {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: no name resolution for {name}") from None
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect  # type: ignore[method-assign]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
