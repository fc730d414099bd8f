"""Pytest fixtures for tests that need a real PostgreSQL with pgvector.

Import them into a ``conftest.py`` (``from flujo_memory.testing import pgvector_dsn``); they
need ``flujo-memory[test]`` (pgserver, psycopg). The server is ``FLUJO_TEST_PGVECTOR_DSN`` when
set, else one ``pgserver`` starts for the session (PostgreSQL 16 with pgvector 0.6.2, in a
temporary folder). Without either the tests skip locally and fail in CI (``CI=true``): CI's own
PostgreSQL has no pgvector, so a skip there would leave the store untested without a word.

``pgvector_dsn``
    The server's URI (session-wide).
``pgvector_database``
    The URI of a fresh database on that server, with the ``vector`` extension created, dropped
    after the test: everything a test leaves there is the test's own (scan every table).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

__all__ = ["database_uri", "pgvector_database", "pgvector_dsn"]


def _missing(reason: str) -> None:
    """Skip locally; in CI a missing real component is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def database_uri(dsn: str, database: str) -> str:
    """``dsn`` (a ``postgresql://`` URI) pointing at ``database`` instead."""
    return urlsplit(dsn)._replace(path=f"/{database}").geturl()


@pytest.fixture(scope="session")
def pgvector_dsn() -> Iterator[str]:
    """A PostgreSQL server with pgvector: ``FLUJO_TEST_PGVECTOR_DSN`` or a pgserver."""
    given = os.environ.get("FLUJO_TEST_PGVECTOR_DSN")
    if given:
        yield given
        return
    folder = tempfile.mkdtemp(prefix="flujo-pgv-")  # short: the socket lives there
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore", UserWarning)
        try:
            from pgserver.postgres_server import (  # type: ignore[import-untyped,unused-ignore]
                get_server,
            )
        except ImportError:
            _missing("pgserver is not installed (pip install 'flujo-memory[test]')")
        try:
            server = get_server(folder, cleanup_mode="delete")
        except (OSError, subprocess.SubprocessError, AssertionError, KeyError) as exc:
            _missing(f"pgserver could not start PostgreSQL: {type(exc).__name__}: {exc}")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture
def pgvector_database(pgvector_dsn: str) -> Iterator[str]:
    """A fresh database on the pgvector server (with the extension), dropped afterwards."""
    psycopg = pytest.importorskip("psycopg", reason="pip install 'flujo-memory[pgvector]'")
    name = f"flujo_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    uri = database_uri(pgvector_dsn, name)
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield uri
    finally:
        with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
