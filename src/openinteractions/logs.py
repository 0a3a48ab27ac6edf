"""Logging set-up: plain lines, or one JSON object a line that carries the id of the interaction whose run
logged it (``server.log_format = "json"``). A run's task is started with its id in ``interaction_id``; tasks
copy the context they are created in, so everything the run logs, down to the backends, carries it (elsewhere,
``extra={"interaction_id": ...}`` names it)."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

interaction_id: ContextVar[str | None] = ContextVar("interaction_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = getattr(record, "interaction_id", None) or interaction_id.get()
        if current is not None:
            entry["interaction_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, form: str) -> None:
    handler = logging.StreamHandler()
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream request or health check
