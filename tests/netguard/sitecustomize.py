"""Loaded into a server under test (``PYTHONPATH``, see ``netguard.server_env``): every outbound connection
attempt the server's egress point sees, allowed, refused or unresolved, is appended to $NETGUARD_LOG as a
JSON line, after a first line that says the guard was loaded."""

import dataclasses
import json
import os

from openinteractions import egress

_LOG = os.environ.get("NETGUARD_LOG", "")


def _write(line: str) -> None:
    with open(_LOG, "a") as f:
        f.write(line + "\n")


if _LOG:
    _write("netguard loaded")
    egress.RECORDER.observe(lambda attempt: _write(json.dumps(dataclasses.asdict(attempt))))
