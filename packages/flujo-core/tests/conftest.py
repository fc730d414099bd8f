"""Shared fixtures for flujo-core's tests."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
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


@pytest.fixture(params=["sqlite", "postgresql"])
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state database URI for each backend: the suite runs against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    uri: str = request.getfixturevalue("flujo_postgres_uri")
    return uri
