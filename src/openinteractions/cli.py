"""The ``openinteractions`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from . import chat, logs
from .config import Settings, load_settings

if TYPE_CHECKING:
    from .engine.service import InteractionService

logger = logging.getLogger("openinteractions")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_exposure(settings: Settings, host: str) -> None:
    if settings.auth.api_keys:
        return
    if not _is_loopback(host) and not settings.server.allow_unauthenticated_remote:
        sys.exit(
            f"refusing to serve {host} without API keys: configure auth.api_keys, or set "
            "server.allow_unauthenticated_remote = true to serve it open"
        )
    logger.warning("no API keys configured: the server is open to anyone who can reach %s", host)


def serve(args: argparse.Namespace) -> None:
    config = args.config or os.environ.get("OPENINTERACTIONS_CONFIG")
    settings = load_settings(config)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    logs.configure(settings.server.log_level, settings.server.log_format)
    _check_exposure(settings, host)
    if not settings.models:
        logger.info("no [models] configured: serving the embedded default model (SmolLM2-135M-Instruct)")
    from .api.app import create_app

    settings.server.host = host  # the Host check answers for the address actually served
    app = create_app(settings, Path(config).resolve().parent if config else Path.cwd())
    from .api.protocol import HttpLimits, HttpProtocol

    # Nothing reads the client's address (there is no access log), so uvicorn's X-Forwarded-* rewriting is
    # off: it would only cost time on every request. The API has no WebSocket endpoint: an upgrade request is
    # answered as plain HTTP, under the same limits, instead of being handed to another protocol.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.server.log_level,
        access_log=False,
        http=functools.partial(HttpProtocol, limits=HttpLimits.of(settings.server)),  # type: ignore[arg-type]
        ws="none",
        proxy_headers=False,
        # JSON logs: uvicorn's own loggers go to the root's JSON handler rather than its plain-text set-up.
        log_config=None if settings.server.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )
    # A Ctrl-C before the server has taken over the signals, or after it gave them back, ends it quietly too.
    with contextlib.suppress(KeyboardInterrupt):
        ApiServer(config, app.state.service).run()


# How long a connection that is idle when shutdown begins stays open: a request already on its way is read
# and answered rather than reset. Closing an idle connection always races with a client that reuses it.
_IDLE_GRACE_SECONDS = 0.25


class ApiServer(uvicorn.Server):
    """uvicorn waits for every open response to end before it shuts the application down, and a run can go
    on for its whole time limit: the runs are cancelled first, which ends their responses.

    Shutdown, in order: stop listening; every response from then on closes its connection (and says so, so
    that no client sends another request on it); refuse new runs (503), cancel the running ones and wait
    until each is stored; give connections that were idle their grace; then uvicorn closes what is idle and
    waits for the rest. SIGINT and SIGTERM both exit 0."""

    def __init__(self, config: uvicorn.Config, service: InteractionService) -> None:
        super().__init__(config)
        self._service = service

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        idle_until = loop.time() + _IDLE_GRACE_SECONDS
        for server in self.servers:
            server.close()  # no new connections while the runs end (super() closes them again, harmlessly)
        self._close_after_responses()
        await self._service.stop_runs()
        if self.server_state.connections:
            await asyncio.sleep(max(0.0, idle_until - loop.time()))
        await super().shutdown(sockets)

    def _close_after_responses(self) -> None:
        """Responses not started yet carry ``connection: close``; those under way close their connection when
        they end. Cycles read the default headers when they start a response; each cycle holds the list it was
        made with, and uvicorn replaces it once a second (not any more: its main loop has ended)."""
        state = self.server_state
        state.default_headers = [*state.default_headers, (b"connection", b"close")]
        for connection in list(state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn raises the signal that stopped it again once it has shut down, which ends the process with
        status 143 on SIGTERM: a server that stopped cleanly exits 0."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def index(args: argparse.Namespace) -> None:
    """The local search index that google_search reads (tools.google_search.provider = "local")."""
    from .tools.search_index import LocalIndex

    config = args.config or os.environ.get("OPENINTERACTIONS_CONFIG")
    settings = load_settings(config)
    data_dir = (Path(config).resolve().parent if config else Path.cwd()) / settings.data_dir()
    store = LocalIndex(data_dir / "search.db")
    try:
        if args.action == "add":
            missing = [p for p in args.targets if not Path(p).exists()]
            if missing:
                sys.exit(f"no such file or folder: {', '.join(missing)}")
            added = store.add([Path(p) for p in args.targets])
            print(f"indexed {added} files into {store.path} ({store.image_count()} images in the index)")
        elif args.action == "list":
            for url, title in store.documents():
                print(f"{url}\t{title}")
        elif args.action == "remove":
            for url in args.targets:
                print(("removed " if store.remove(url) else "not indexed: ") + url)
        else:
            find = store.search_images if args.action == "images" else store.search
            for hit in find(" ".join(args.targets), settings.tools.google_search.max_results):
                image = f"{hit.image_url}  on " if hit.image_url else ""
                print(f"{hit.score:7.3f}  {hit.title}  {image}{hit.url}\n         {hit.snippet}")
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="openinteractions", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="start the server")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    run.add_argument("--config", default=None, help="a TOML settings file")
    run.set_defaults(func=serve)
    search = commands.add_parser("index", help="the local search index used by google_search")
    search.add_argument("action", choices=["add", "list", "remove", "search", "images"])
    search.add_argument("targets", nargs="*", help="files or folders (add), URLs (remove), words (search, images)")
    search.add_argument("--config", default=None, help="a TOML settings file (for store.data_dir)")
    search.set_defaults(func=index)
    chat.add_parser(commands)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
