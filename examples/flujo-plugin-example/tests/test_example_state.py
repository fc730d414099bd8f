"""The ``example-sqlite`` state backend: it passes flujo's state backend conformance suite, and
``[state] uri = "example-sqlite:///..."`` chooses it everywhere the core's backends can be."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from flujo.config import load_config
from flujo.plugin import StateBackend
from flujo.plugins.manager import PluginManager
from flujo.state import open_backend
from flujo.testing.cli import run_flujo
from flujo.testing.conformance import StateBackendConformance

import flujo_plugin_example.plugin
from flujo_plugin_example.state import ExampleSQLiteBackend


class TestExampleSQLite(StateBackendConformance):
    """The backend as Flujo builds it: the registered factory, from a flujo.toml's URI."""

    @pytest.fixture
    def make_state(self, tmp_path: Path) -> Callable[[], StateBackend]:
        toml = tmp_path / "flujo.toml"
        toml.write_text('[state]\nuri = "example-sqlite:///state/runs.db"\n', encoding="utf-8")
        manager = PluginManager()
        info = manager.register(flujo_plugin_example.plugin, "flujo-plugin-example")
        assert info.status == "ok", info.error
        config = load_config(toml, plugin_manager=manager, environ={})

        def make() -> StateBackend:
            backend = open_backend(config.state, config.root, manager.registry)
            assert isinstance(backend, ExampleSQLiteBackend)
            return backend

        return make


def test_flujo_runs_keep_runs_in_the_example_backend(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "example-sqlite:///runs.db"\n')
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n\npipeline = Step.from_callable(str.upper, name='up')\n"
    )
    env = {"FLUJO_LOAD_PLUGINS": "flujo-plugin-example"}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    assert (tmp_path / "runs.db").is_file()
    shown = run_flujo("runs", "list", "--json", cwd=tmp_path, env=env)
    assert [r["run_id"] for r in json.loads(shown.stdout)] == [run_id], shown.stderr
    # Without the plugin the scheme is unknown, and the error says which ones are registered.
    off = run_flujo("runs", "list", cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": ""})
    assert off.returncode == 2
    assert "unknown state backend 'example-sqlite'; registered: postgres (flujo-core)" in (
        off.stderr
    )
