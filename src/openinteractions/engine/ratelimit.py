"""Per-key limits that a retry can fix: how fast a key may create interactions, and how many may run at once.

Both answer with how long to wait, for a 429's ``Retry-After``. The state is in this process's memory, one entry
per key that has made a request (keys come from the configuration, so the tables stay small).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    """A token bucket per key: ``burst`` requests at once, then ``rate`` per second. A refused request takes
    nothing, so a client that waits as told gets in."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when they were counted)

    def take(self, key: str) -> float:
        """0 if the request may go, else the seconds until it may."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0


class RunSlots:
    """How many runs each key has in progress, against a limit (0: none)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[str, int] = {}

    def take(self, key: str) -> bool:
        running = self._running.get(key, 0)
        if self.limit and running >= self.limit:
            return False
        self._running[key] = running + 1
        return True

    def give_back(self, key: str) -> None:
        running = self._running.get(key, 0) - 1
        if running > 0:
            self._running[key] = running
        else:
            self._running.pop(key, None)

    def running(self, key: str) -> int:
        return self._running.get(key, 0)
