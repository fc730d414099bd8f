"""Fixtures of the flujo-evals tests (helpers live in ``evals_testkit``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from flujo import FlujoConfig
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo_evals import plugin as evals_plugin

# The helpers module sits next to the tests; make it importable in every pytest import mode
# (nox runs with --import-mode=importlib, which does not put test folders on sys.path).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from evals_testkit import Kit  # noqa: E402


@pytest.fixture
def kit() -> Kit:
    """A fresh test kit of evaluators."""
    return Kit()


ConfigFactory = Callable[[str], FlujoConfig]


@pytest.fixture
def make_config(tmp_path: Path, kit: Kit) -> ConfigFactory:
    """``make_config(toml)``: a config in ``tmp_path`` with flujo-evals and the kit loaded."""

    def make(toml: str) -> FlujoConfig:
        path = tmp_path / "flujo.toml"
        path.write_text('[state]\nuri = "sqlite:///.flujo/flujo.db"\n' + toml)
        manager = PluginManager(strict=True)
        manager.register(evals_plugin, "flujo-evals")
        manager.register(kit, "evals-kit")
        return load_config(path, plugin_manager=manager, environ={})

    return make


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    """An open SQLite state with the evaluations table."""
    from flujo_evals.storage import migrations

    backend = SQLiteBackend(tmp_path / "state.db")
    await backend.open(migrations("sqlite"))
    yield backend
    await backend.close()
