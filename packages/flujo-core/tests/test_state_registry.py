"""State backends are a registry kind: chosen by the URI's scheme, the core's own included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, RunStatus, Step
from flujo.config import StateSettings
from flujo.domain.errors import ConfigError, PluginError
from flujo.domain.interfaces import StateBackend, StateLocation
from flujo.plugin import hookimpl, open_state
from flujo.plugins.manager import PluginManager
from flujo.state import open_backend
from flujo.state.postgres import PostgresBackend
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import run_flujo

# A third party's backend: SQLite under its own scheme, counting what it was asked to open.
_PLUGIN = """
from flujo.plugin import hookimpl
from flujo.state.sqlite import SQLiteBackend

OPENED = []


class AcmeBackend(SQLiteBackend):
    pass


def acme(location):
    OPENED.append(location.uri)
    return AcmeBackend(location.path())


@hookimpl
def flujo_register_state_backends(register):
    register("acme-db", acme)
"""


class _Acme:
    opened: list[StateLocation]

    def __init__(self) -> None:
        self.opened = []

    @hookimpl
    def flujo_register_state_backends(self, register: Any) -> None:
        register("acme-db", self.make)

    def make(self, location: StateLocation) -> StateBackend:
        self.opened.append(location)
        return SQLiteBackend(location.path())


def _config(uri: str, tmp_path: Path, *plugins: tuple[str, object]) -> FlujoConfig:
    manager = PluginManager()
    for name, plugin in plugins:
        info = manager.register(plugin, name)
        assert info.status == "ok", info.error
    return FlujoConfig(
        state=StateSettings(uri=uri), plugin_manager=manager, path=tmp_path / "flujo.toml"
    )


def test_the_core_registers_its_backends_through_the_registry() -> None:
    registry = PluginManager().registry
    assert registry.names("state_backends") == ["postgres", "postgresql", "sqlite"]
    root = Path("/project")
    cases: dict[str, tuple[type[Any], Any]] = {
        "sqlite:///.flujo/flujo.db": (SQLiteBackend, root / ".flujo/flujo.db"),
        "sqlite:////abs/state.db": (SQLiteBackend, Path("/abs/state.db")),
        "runs/state.db": (SQLiteBackend, root / "runs/state.db"),  # a plain path is sqlite
        "sqlite:///:memory:": (SQLiteBackend, ":memory:"),
        "postgresql://u@h/db": (PostgresBackend, None),
        "postgres://u@h/db": (PostgresBackend, None),
    }
    for uri, (cls, path) in cases.items():
        backend = open_backend(StateSettings(uri=uri), root, registry)
        assert type(backend) is cls, uri
        if path is not None:
            assert getattr(backend, "path", None) == path, uri


def test_an_unknown_scheme_lists_every_registered_scheme_and_its_plugin(tmp_path: Path) -> None:
    config = _config("mongo://user:hunter2@h/db", tmp_path, ("acme", _Acme()))
    assert config.plugin_manager is not None
    with pytest.raises(ConfigError) as err:
        open_backend(config.state, tmp_path, config.plugin_manager.registry)
    assert str(err.value) == (
        "[state] uri 'mongo://user:***@h/db': unknown state backend 'mongo'; registered: "
        "acme-db (acme), postgres (flujo-core), postgresql (flujo-core), sqlite (flujo-core)"
    )
    with pytest.raises(ConfigError, match="expected scheme://"):
        open_backend(StateSettings(uri="sqlite:state.db"), tmp_path)


def test_the_core_schemes_cannot_be_taken_and_schemes_must_be_schemes() -> None:
    class Thief:
        @hookimpl
        def flujo_register_state_backends(self, register: Any) -> None:
            register("sqlite", lambda location: None)

    class Shouty:
        @hookimpl
        def flujo_register_state_backends(self, register: Any) -> None:
            register("Acme DB", lambda location: None)

    manager = PluginManager()
    info = manager.register(Thief(), "thief")
    assert info.status == "error"
    assert "state backend name 'sqlite' is already registered by 'flujo-core'" in str(info.error)
    info = manager.register(Shouty(), "shouty")
    assert info.status == "error"
    assert "not a URI scheme" in str(info.error)
    assert manager.registry.names("state_backends") == ["postgres", "postgresql", "sqlite"]
    strict = PluginManager(strict=True)
    with pytest.raises(PluginError):
        strict.register(Thief(), "thief")


async def test_open_state_and_the_runner_use_a_plugins_backend(tmp_path: Path) -> None:
    acme = _Acme()
    config = _config("acme-db:///runs.db", tmp_path, ("acme", acme))
    state = await open_state(config)
    await state.close()
    async with Flujo(Pipeline([Step.from_callable(str.upper, name="up")]), config=config) as r:
        result = await r.run_async("hi")
    assert result.status is RunStatus.SUCCEEDED
    assert [loc.scheme for loc in acme.opened] == ["acme-db", "acme-db"]
    assert acme.opened[0].root == tmp_path
    assert (tmp_path / "runs.db").is_file()


def test_cli_runs_and_migrate_go_through_the_registry(
    tmp_path: Path, make_dist: Callable[..., Path]
) -> None:
    make_dist("flujo-acme", "flujo_acme_state", _PLUGIN)
    env = {"FLUJO_LOAD_PLUGINS": "flujo-acme"}
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "acme-db:///acme.db"\n')
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n\npipeline = Step.from_callable(str.upper, name='up')\n"
    )
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    listed = run_flujo("runs", "list", "--json", cwd=tmp_path, env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id], listed.stderr
    moved = run_flujo(
        "state", "migrate", "--from", "acme-db:///acme.db", "--to", "sqlite:///plain.db",
        "--json", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    copied = json.loads(moved.stdout)["copied"]
    assert (copied["workflow_state"], copied["step_results"]) == (1, 1)
    bad = run_flujo(
        "state", "migrate", "--from", "acme-db:///acme.db", "--to", "nope://x", cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --to 'nope://x': unknown state backend 'nope'; registered: acme-db "
        "(flujo-acme), postgres (flujo-core), postgresql (flujo-core), sqlite (flujo-core)"
    )
    listing = run_flujo("plugins", "--json", cwd=tmp_path, env=env)
    (acme,) = [p for p in json.loads(listing.stdout) if p["name"] == "flujo-acme"]
    assert acme["registered"] == {"state_backends": ["acme-db"]}


def test_a_second_ctrl_c_on_a_plugins_backend_says_the_run_waits_for_its_lease(
    tmp_path: Path,
) -> None:
    """The stop-at-once path writes with the core's own sync drivers; a plugin's backend has
    none, so it is refused with why (never a write to some other database)."""
    from flujo.domain.errors import StateError
    from flujo.domain.interfaces import Lease
    from flujo.state._stop_now import interrupt_run_now

    class Other:
        dialect = "sqlite"

    class Plugin:
        @hookimpl
        def flujo_register_state_backends(self, register: Any) -> None:
            register("other-db", lambda location: Other())

    manager = PluginManager()
    manager.register(Plugin(), "other")
    with pytest.raises(StateError, match="resumable once its lease expires"):
        interrupt_run_now(
            StateSettings(uri="other-db:///x.db"),
            tmp_path,
            "r1",
            Lease("w", 1),
            "interrupted",
            manager.registry,
        )
    assert list(tmp_path.iterdir()) == []
