"""Shared fixtures for flujo-core's tests."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flujo import FlujoConfig
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend


@pytest.fixture
def state(tmp_path: Path) -> SQLiteBackend:
    """A SQLite state backend in a temporary folder (the runner opens it)."""
    return SQLiteBackend(tmp_path / "state" / "flujo.db")


@pytest.fixture
def config() -> FlujoConfig:
    """Defaults, with an empty plugin manager: no installed plugin leaks into a test."""
    return FlujoConfig(plugin_manager=PluginManager())


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path (and PYTHONPATH, for subprocesses) to install fake dists into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), *sys.path]))
    return folder


@pytest.fixture
def make_dist(site: Path) -> Callable[..., Path]:
    """Install a fake distribution with a ``flujo.plugins`` entry point into ``site``.

    ``make_dist("flujo-x", "flujo_x", "<module source>")`` writes ``flujo_x.py`` and a
    ``flujo_x-1.0.dist-info`` that importlib.metadata finds, as pip would.
    """

    def make(dist: str, module: str, source: str, version: str = "1.0") -> Path:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[flujo.plugins]\n{module} = {module}\n")
        return site / f"{module}.py"

    return make


def postgres_dsn() -> str | None:
    """The test server's DSN (``FLUJO_TEST_POSTGRES_DSN``); in CI its absence is a failure."""
    dsn = os.environ.get("FLUJO_TEST_POSTGRES_DSN")
    if not dsn and os.environ.get("CI") == "true":
        pytest.fail("CI=true but FLUJO_TEST_POSTGRES_DSN is not set: .ci/run starts PostgreSQL")
    return dsn


@pytest.fixture
def pg_schema_uri() -> Iterator[str]:
    """A PostgreSQL URI whose search_path is a fresh schema, dropped after the test."""
    import uuid

    dsn = postgres_dsn()
    if not dsn:
        pytest.skip("no PostgreSQL: set FLUJO_TEST_POSTGRES_DSN (.ci/run does)")
    psycopg = pytest.importorskip("psycopg", reason="pip install 'flujo-core[postgres]'")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    yield f"{dsn}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state database URI for each backend: the suite runs against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    uri: str = request.getfixturevalue("pg_schema_uri")
    return uri
