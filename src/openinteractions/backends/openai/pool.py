"""Several upstreams serving one model: the order to try them in, and what is known of their health.

An upstream is marked down when a request to it fails before its answer started (connection refused, a 5xx,
no first byte in time), and up again when a health check (``GET {base}/models``) or a request succeeds. Requests
go to the upstreams that are up, by round robin or to the one with the fewest requests in flight; the ones that
are down come last, so that a request is still tried everywhere when every upstream looks down (the view may be
stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx

logger = logging.getLogger(__name__)

Balancing = Literal["round_robin", "least_busy"]


@dataclass(eq=False)
class Upstream:
    base_url: str
    healthy: bool = True
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.chat_url = httpx.URL(f"{self.base_url}/chat/completions")

    @property
    def label(self) -> str:
        """How messages name it: scheme, host, port and path (base URLs carry no credentials)."""
        return f"upstream {self.base_url}"


class UpstreamPool:
    def __init__(
        self,
        base_urls: list[str],
        balancing: Balancing,
        check_interval: float,
        probe: Callable[[Upstream], Awaitable[bool]],
    ) -> None:
        self.upstreams = [Upstream(url) for url in base_urls]
        self._balancing = balancing
        self._interval = check_interval
        self._probe = probe
        self._turn = 0
        self._checker: asyncio.Task[None] | None = None

    def candidates(self) -> list[Upstream]:
        """Every upstream, in the order to try them for one request."""
        up = [u for u in self.upstreams if u.healthy]
        down = [u for u in self.upstreams if not u.healthy]
        if up:
            turn = self._turn % len(up)
            self._turn += 1
            up = up[turn:] + up[:turn]
            if self._balancing == "least_busy":
                up.sort(key=lambda u: u.in_flight)  # stable: round robin among the equally busy
        return up + down

    def failed(self, upstream: Upstream, reason: str) -> None:
        if upstream.healthy and len(self.upstreams) > 1:
            logger.warning("%s marked down: %s", upstream.label, reason)
        upstream.healthy = False

    def succeeded(self, upstream: Upstream) -> None:
        if not upstream.healthy:
            logger.info("%s is up again", upstream.label)
        upstream.healthy = True

    def start(self) -> None:
        """Start the periodic checks (from the event loop; only useful with more than one upstream)."""
        if self._checker is None and self._interval > 0 and len(self.upstreams) > 1:
            self._checker = asyncio.get_running_loop().create_task(self._check_forever(), name="openai health checks")

    async def check_all(self) -> None:
        results = await asyncio.gather(*(self._probe(u) for u in self.upstreams), return_exceptions=True)
        for upstream, ok in zip(self.upstreams, results, strict=True):
            if ok is True:
                self.succeeded(upstream)
            else:
                self.failed(upstream, "health check failed")

    async def _check_forever(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:  # a check must never end the checking
                logger.exception("openai upstream health check failed")
            await asyncio.sleep(self._interval)

    async def aclose(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None


async def probe_models(client: httpx.AsyncClient, upstream: Upstream, headers: dict[str, str], timeout: float) -> bool:
    """A health check: ``GET {base}/models`` answers 2xx within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            response = await client.get(f"{upstream.base_url}/models", headers=headers, timeout=timeout)
    except (httpx.HTTPError, TimeoutError):
        return False
    return response.is_success
