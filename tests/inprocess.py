"""The service without HTTP, for tests that need to reach between its awaits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openinteractions.api.app import build_service
from openinteractions.api.body import parse_create
from openinteractions.config import Settings
from openinteractions.engine.run import Run
from openinteractions.engine.service import InteractionService


def scripted_service(tmp_path: Path) -> InteractionService:
    """Model "m" plays inline scripts; everything is kept under ``tmp_path``. Start it with ``await start()``."""
    settings = Settings(
        models={"m": {"backend": "scripted", "inline": True}}, store={"data_dir": tmp_path}, signing_key="k" * 32
    )
    return build_service(settings, tmp_path)


async def create(service: InteractionService, input_text: str, **fields: Any) -> Run:
    body = json.dumps({"model": "m", "input": input_text, **fields}).encode()
    return await service.create(parse_create(body), "o", "v1beta")


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` between loop passes until it holds: a regression fails with TimeoutError instead of
    hanging the suite, and a run that needs more passes than expected is still waited for."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.001)  # not 0: a store write in a thread or a socket gets the CPU meanwhile
