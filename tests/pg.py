"""Scratch PostgreSQL databases for tests, reached through the server's unix socket: the suite runs in a
network namespace of its own (scripts/isolated), where 127.0.0.1:5432 is nobody."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg

SOCKETS = os.environ.get("PGHOST", "/var/run/postgresql")  # the folder of PostgreSQL's unix socket
ADMIN = f"host={SOCKETS} user=postgres dbname=postgres"


def url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` (store.url)."""
    return f"postgresql+psycopg://postgres@/{database}?host={SOCKETS}"


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A database of its own, dropped afterwards: tests never touch another one."""
    name = f"oi_test_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def store_section(kind: str) -> Iterator[dict[str, str]]:
    """The ``[store]`` section of a test server on ``kind``: "sqlite" (the default file in its data folder) or
    "postgresql" (a scratch database, dropped afterwards)."""
    if kind == "sqlite":
        yield {}
        return
    with scratch_database() as database:
        yield {"url": url(database)}
