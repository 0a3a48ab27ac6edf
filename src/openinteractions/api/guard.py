"""Which requests are answered at all: by the Host they were sent to, and by the web page that sent them.

A server on loopback is reachable from every web page its user opens. A page cannot read another origin's
answers, but a "simple" cross-site request (a POST of ``text/plain``, a form) still runs; and a page whose own
name the attacker points at 127.0.0.1 (DNS rebinding) is same-origin with its requests, so it reads the answers
too, but then its requests carry the attacker's name in ``Host``. So: a Host that is not this server's is
refused (421), a request from another origin's page is refused (403) unless that origin is allowed, and a POST
in a content type a page may send without asking first (a CORS preflight) is refused (415). All before routing,
authentication or reading the body, so nothing runs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ApiError

_LOOPBACK_NAMES = frozenset({"localhost"})
_WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})
# The content types a page may POST cross-origin without a preflight (the Fetch standard's CORS-safelisted
# ones). The SDKs send application/json on every request.
_SIMPLE_TYPES = frozenset({b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"})
# Header names read here, each to its slot.
_WATCHED = {b"host": 0, b"origin": 1, b"sec-fetch-site": 2, b"content-type": 3}
_CACHE_SIZE = 256
_REG_NAME = re.compile(r"[a-z0-9._~!$&'()*+,;=%-]+")  # RFC 3986's, lowercase


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return None


def host_name(value: str) -> str | None:
    """The name in a Host header, lowercase, without port or trailing dot; None when it is not one."""
    value = value.lower()
    if value.startswith("["):
        end = value.find("]") + 1
        name, rest = value[:end], value[end:]
        if not end or _ip(name) is None:
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
        if not _REG_NAME.fullmatch(name):
            return None
    if rest and not (rest[0] == ":" and (rest == ":" or (rest[1:].isascii() and rest[1:].isdigit()))):
        return None
    name = name.removesuffix(".")
    return name or None


class HostPolicy:
    """The Host names this server answers for: the loopback names and addresses (no DNS rebinding can put them
    in a browser's Host: a page only sends them when it was itself loaded from loopback), the address it
    serves (any IP address when it serves all of them: rebinding needs a name), and the operator's names."""

    def __init__(self, bound: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        self.anything = "*" in allowed
        self._names = set(_LOOPBACK_NAMES) | {name for name in allowed if not name.startswith("*.")}
        self._suffixes = tuple(name[1:] for name in allowed if name.startswith("*."))
        self._any_ip = bound in _WILDCARD_ADDRESSES
        bound_ip = _ip(bound)
        self._bound_ip = bound_ip
        if bound_ip is None:
            self._names.add(bound.lower().removesuffix("."))
        self._ips = {ip for ip in map(_ip, self._names) if ip is not None}

    def allows(self, name: str) -> bool:
        if self.anything or name in self._names or (self._suffixes and name.endswith(self._suffixes)):
            return True
        ip = _ip(name)
        return ip is not None and (self._any_ip or ip.is_loopback or ip == self._bound_ip or ip in self._ips)


class RequestGuard:
    """ASGI middleware in front of everything else (CORS included) that applies the rules above."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy, origins: Iterable[str]) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = frozenset(origins)
        self._any_origin = "*" in self.origins
        self._verdicts: dict[str, ApiError | None] = {}  # per Host value: clients send the same one every time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self.check(scope)
            if error is not None:
                await _answer(error, send)
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> ApiError | None:
        seen: list[bytes | None] = [None, None, None, None]
        hosts = 0
        for name, value in scope["headers"]:
            slot = _WATCHED.get(name)
            if slot is not None:
                seen[slot] = value
                if slot == 0:
                    hosts += 1
        host, origin, site, content_type = seen
        if hosts > 1:
            return ApiError(400, "More than one Host header.")
        if host is None:
            if scope["http_version"] == "1.0":
                error = None  # HTTP/1.0 may leave it out, and no browser does
            else:
                return ApiError(400, "Missing Host header.")
        else:
            error = self._host_verdict(host.decode("latin-1"))
        if error is None and (origin is not None or site is not None):
            error = self._origin_verdict(scope, host, origin, site)
        if error is None and content_type is not None and scope["method"] == "POST":
            media_type = content_type.partition(b";")[0].strip().lower()
            if media_type in _SIMPLE_TYPES:
                return ApiError(
                    415,
                    f"Content-Type {media_type.decode('latin-1')!r} is not accepted: send JSON as application/json.",
                    "INVALID_ARGUMENT",
                )
        return error

    def _host_verdict(self, host: str) -> ApiError | None:
        try:
            return self._verdicts[host]
        except KeyError:
            pass
        name = host_name(host)
        if name is None:
            verdict: ApiError | None = ApiError(400, f"Invalid Host header {host!r}.")
        elif self.hosts.allows(name):
            verdict = None
        else:
            verdict = ApiError(
                421,
                f"This server does not answer for host {name!r}; server.allowed_hosts lists the names it serves.",
                "INVALID_ARGUMENT",
            )
        if len(self._verdicts) >= _CACHE_SIZE:
            self._verdicts.clear()
        self._verdicts[host] = verdict
        return verdict

    def _origin_verdict(
        self, scope: Scope, host: bytes | None, origin: bytes | None, site: bytes | None
    ) -> ApiError | None:
        if self._any_origin:
            return None
        if origin is None:
            # A browser request that carries no Origin (a navigation, an image): only Sec-Fetch-Site says where
            # it came from.
            if site in (b"cross-site", b"same-site"):
                return _cross_origin(f"Cross-site browser request (Sec-Fetch-Site: {site.decode()})")
            return None
        sender = origin.decode("latin-1").lower()
        if sender in self.origins:
            return None
        if host is not None and sender == f"{scope['scheme']}://{host.decode('latin-1').lower()}":
            return None  # same-origin: the Host was checked above
        return _cross_origin(f"Cross-origin request from {sender!r}")


def _cross_origin(what: str) -> ApiError:
    return ApiError(403, f"{what} refused: server.allowed_origins lists the web origins whose pages may call this API.")


async def _answer(error: ApiError, send: Send) -> None:
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
