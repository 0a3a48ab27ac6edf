"""The ``openinteractions`` command."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

import uvicorn

from .config import Settings, load_settings

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
    logging.basicConfig(level=settings.server.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    _check_exposure(settings, host)
    if not settings.models:
        logger.info("no [models] configured: serving the embedded default model (SmolLM2-135M-Instruct)")
    from .api.app import create_app

    app = create_app(settings, Path(config).resolve().parent if config else Path.cwd())
    uvicorn.run(app, host=host, port=port, log_level=settings.server.log_level, access_log=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="openinteractions", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="start the server")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    run.add_argument("--config", default=None, help="a TOML settings file")
    run.set_defaults(func=serve)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
