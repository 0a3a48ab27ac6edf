"""What a run's end tells the observers that hang off it (webhooks): one value, handed over once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunEnding:
    owner: str
    interaction_id: str
    status: str
    webhook_config: dict[str, Any] | None
    errors: list[dict[str, str]]


# Called once, synchronously, just before the run's final state is queued for the store, so that what it queues
# (webhooks: their outbox rows) commits with it. It must not raise.
EndHook = Callable[[RunEnding], None]


def no_end_hook(ending: RunEnding) -> None:
    return None
