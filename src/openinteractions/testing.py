"""A test kit for apps built on the Interactions API: the real server, in the test's process, on a free loopback
port, whose models play scripts written in the test. The app under test keeps its unmodified SDK client
(``google-genai``'s ``genai.Client()`` reads ``GOOGLE_GEMINI_BASE_URL`` and ``GEMINI_API_KEY``).

As a pytest plugin (installed with the package) it offers the ``interactions`` fixture::

    from openinteractions.testing import call, reply

    def test_weather_app(interactions):
        interactions.script("gemini-3-flash-preview",
                            call("get_weather", {"city": "Paris"}),
                            reply("It is sunny in Paris.", last_step="function_result"))
        assert my_app.ask("Weather in Paris?") == "It is sunny in Paris."

Rules are tried in order; the first whose conditions (``input_contains``, ``last_step``, ``tool``, ``turn``,
``system_contains``, ``round``…) all hold answers. Only the model is a test double: the protocol, storage,
chaining, streaming and server tools are the server's own. See docs/testing.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_MODELS = ("gemini-3-flash-preview", "gemini-3.1-pro-preview", "gemini-2.5-flash")
API_KEY = "test-key-openinteractions"


def rule(*events: dict[str, Any], **when: Any) -> dict[str, Any]:
    """A rule: its events play when every condition in ``when`` holds."""
    return {"when": when, "events": list(events)}


def reply(text: str, *, thought: str | None = None, **when: Any) -> dict[str, Any]:
    """The model answers ``text`` (after a thought whose summary is ``thought``, if given)."""
    events = [{"thought": thought}] if thought is not None else []
    return rule(*events, {"text": text}, **when)


def call(name: str, arguments: dict[str, Any] | None = None, **when: Any) -> dict[str, Any]:
    """The model calls the function ``name``; the interaction ends ``requires_action``."""
    return rule({"call": {"name": name, "arguments": arguments or {}}}, **when)


def fail(message: str, code: str = "internal", **when: Any) -> dict[str, Any]:
    """The model fails: the interaction ends ``failed`` with this error."""
    return rule({"error": {"code": code, "message": message}}, **when)


class InteractionsServer:
    """The server with scripted models, run by uvicorn in a thread of this process. ``start()`` returns once it
    answers; ``stop()`` ends its runs and closes it."""

    def __init__(self, data_dir: Path, models: tuple[str, ...] = DEFAULT_MODELS, api_key: str = API_KEY) -> None:
        from .config import Settings

        self.api_key = api_key
        self.port = 0  # the port the system picks when it starts (no race with another process for a "free" one)
        self.url = ""
        self._models = models
        self._settings = Settings.model_validate({
            "models": {name: {"backend": "scripted"} for name in models},
            "auth": {"api_keys": [api_key]},
            "store": {"data_dir": str(data_dir)},
            "server": {"host": "127.0.0.1", "port": 0, "log_level": "warning"},
        })  # fmt: skip
        self._data_dir = data_dir
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> InteractionsServer:
        import uvicorn

        from .api.app import create_app
        from .cli import ApiServer

        app = create_app(self._settings, self._data_dir)
        self._service = app.state.service
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                ws="none", proxy_headers=False)  # fmt: skip
        self._server = ApiServer(config, self._service)  # stopping it cancels the runs still going
        self._thread = threading.Thread(target=self._server.run, name="openinteractions-testing", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the OpenInteractions test server did not start (see the log above)")
            self._thread.join(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
            self._server = self._thread = None

    def script(self, model: str, *rules: dict[str, Any]) -> None:
        """From now on ``model`` answers by these rules (those given before are dropped)."""
        from .backends.scripted import Script, ScriptedBackend

        route = self._service.registry.resolve(model)
        if route is None or not isinstance(route.backend, ScriptedBackend):
            raise ValueError(f"{model!r} is not one of this server's models: {list(self._models)}")
        route.backend.use(Script.model_validate({"rules": list(rules)}))

    def env(self) -> dict[str, str]:
        """What an unmodified ``genai.Client()`` needs to talk to this server."""
        return {"GOOGLE_GEMINI_BASE_URL": self.url, "GEMINI_API_KEY": self.api_key, "GOOGLE_API_KEY": self.api_key}

    def client(self) -> Any:
        """A ``google-genai`` client for this server."""
        from google import genai

        return genai.Client(api_key=self.api_key, http_options={"base_url": self.url})

    def __enter__(self) -> InteractionsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dumps(rules: list[dict[str, Any]]) -> str:
    """Rules as a script file's JSON (for a server run from a config file: ``script = "rules.json"``)."""
    return json.dumps({"rules": rules}, indent=2)


try:
    import pytest
except ImportError:  # the kit without pytest: InteractionsServer as a context manager
    pass
else:

    @pytest.fixture
    def interactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractionsServer]:
        """A started test server; ``genai.Client()`` made in the test (or the app it tests) talks to it."""
        server = InteractionsServer(tmp_path / "openinteractions").start()
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        try:
            yield server
        finally:
            server.stop()
