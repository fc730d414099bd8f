"""Pytest fixtures for testing pipelines and Flujo plugins.

Installed with ``flujo-core`` and loaded into every pytest session through the ``pytest11``
entry point ``flujo`` (disable it with ``pytest -p no:flujo``). Nothing Flujo-specific is
imported until a fixture is used, so the plugin costs nothing in sessions that do not use it.

Fixtures:

``flujo_plugin_manager``
    A fresh :class:`~flujo.plugins.manager.PluginManager` with no entry points loaded.
``registered_plugin``
    A factory of context managers that register a plugin object for the duration of a
    ``with`` block and give back the manager, the plugin's record and a validated
    :class:`~flujo.config.FlujoConfig`::

        def test_registers_policy(registered_plugin):
            with registered_plugin(my_plugin, name="my-plugin") as reg:
                assert reg.info.registered["policies"] == ["deny_words"]
                policy = reg.create("policies", "deny_words")

``flujo_config``
    A :class:`~flujo.config.FlujoConfig` rooted at ``tmp_path``; the state database lives in
    ``tmp_path``.
``fake_openai``
    A local OpenAI-compatible server (:class:`flujo.testing.fake_openai.FakeOpenAIServer`),
    with ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` pointing at it for the test.
``flujo_postgres_uri``
    A PostgreSQL URI in a throwaway schema (skips without ``FLUJO_TEST_POSTGRES_DSN``).
``flujo_state_uri``
    A state database URI, once per backend: the test runs on SQLite and on PostgreSQL::

        def test_my_rows(flujo_state_uri, tmp_path):
            (tmp_path / "flujo.toml").write_text(f'[state]\nuri = "{flujo_state_uri}"\n')
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.plugins.manager import PluginInfo, PluginManager
    from flujo.plugins.registry import Kind
    from flujo.testing.fake_openai import FakeOpenAIServer

__all__ = [
    "PluginRegistrar",
    "RegisteredPlugin",
    "fake_openai",
    "flujo_config",
    "flujo_plugin_manager",
    "flujo_postgres_uri",
    "flujo_state_uri",
    "registered_plugin",
]

DEFAULT_CONFIG_TOML = '[state]\nuri = "sqlite:///.flujo/flujo.db"\n'
"""What :func:`flujo_config` writes to ``tmp_path / "flujo.toml"`` when no file is there."""


@dataclass(frozen=True, slots=True)
class RegisteredPlugin:
    """A plugin registered by :func:`registered_plugin`, valid inside its ``with`` block."""

    plugin: object
    """The object that was registered (a module or any object with ``flujo_*`` hooks)."""
    name: str
    """The name it was registered under."""
    info: PluginInfo
    """Its record, as ``flujo plugins`` shows it: ``status``, ``error``, ``hooks``,
    ``registered`` (``{kind: [names]}``) and ``sections``."""
    manager: PluginManager
    """The plugin manager it is registered in."""
    config: FlujoConfig
    """A configuration validated against :attr:`manager`, so the plugin's sections are known."""

    def create(self, kind: Kind, name: str) -> Any:
        """Call the factory registered as ``name`` of ``kind`` with :attr:`config`.

        ``kind`` is one of ``"policies"``, ``"vector_stores"``, ``"embedders"``,
        ``"sandboxes"``, ``"evaluators"`` and ``"tools"``.
        """
        return self.manager.registry.create(kind, name, self.config)


def _settings_environ(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{section: {key: value}}`` as ``FLUJO__<SECTION>__<KEY>`` overrides (JSON values)."""
    environ: dict[str, str] = {}
    for section, table in settings.items():
        for key, value in table.items():
            if "__" in section or "__" in key or not section or not key:
                raise ValueError(f"cannot express [{section}] {key!r} as a configuration override")
            environ[f"FLUJO__{section.upper()}__{key.upper()}"] = json.dumps(value)
    return environ


class PluginRegistrar:
    """The object the :func:`registered_plugin` fixture returns; call it to register a plugin.

    Each call returns a context manager: the plugin is registered on entry and removed again
    on exit, whatever happens inside the block.
    """

    def __init__(self, manager: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._manager = manager
        self._tmp_path_factory = tmp_path_factory

    @contextlib.contextmanager
    def __call__(
        self,
        plugin: object,
        name: str | None = None,
        *,
        manager: PluginManager | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        config_file: str | Path | None = None,
        version: str | None = None,
        strict: bool = True,
    ) -> Iterator[RegisteredPlugin]:
        """Register ``plugin`` under ``name`` for the duration of the ``with`` block.

        :param plugin: a module or object with ``flujo_*`` hook implementations.
        :param name: the plugin's name; defaults to the module's ``__name__`` or the class name.
        :param manager: the manager to register into; defaults to the test's
            ``flujo_plugin_manager``, so plugins registered in nested blocks see each other.
        :param settings: ``flujo.toml`` values to validate, as ``{section: {key: value}}``
            (applied as ``FLUJO__<SECTION>__<KEY>`` overrides on top of ``config_file``).
        :param config_file: a ``flujo.toml`` to validate; defaults to an empty file in a fresh
            temporary folder, so no ``flujo.toml`` of the working directory is picked up.
        :param version: the version ``flujo plugins`` would show.
        :param strict: raise :class:`~flujo.domain.errors.PluginError` when registration
            fails; pass ``False`` to inspect ``info.status`` and ``info.error`` instead.
        :raises flujo.ConfigError: when ``settings`` or ``config_file`` do not validate.
        :raises ValueError: when ``manager`` already has a plugin called ``name``.
        """
        from flujo.config import load_config
        from flujo.domain.errors import PluginError

        pm = self._manager if manager is None else manager
        if name is None:
            name = str(getattr(plugin, "__name__", type(plugin).__name__))
        if any(p.name == name for p in pm.plugins) or pm.pm.get_plugin(name) is not None:
            raise ValueError(f"a plugin named {name!r} is already registered; pass another name")
        if config_file is None:
            config_file = self._tmp_path_factory.mktemp("flujo-plugin") / "flujo.toml"
            config_file.write_text("")
        try:
            info = pm.register(plugin, name, version=version)
            if strict and info.status != "ok":
                raise PluginError(name, info.error or f"registration ended {info.status!r}")
            config = load_config(
                config_file, plugin_manager=pm, environ=_settings_environ(settings or {})
            )
            yield RegisteredPlugin(plugin, name, info, pm, config)
        finally:
            pm.unregister(name)


@pytest.fixture
def flujo_plugin_manager() -> PluginManager:
    """A fresh plugin manager with no installed plugins loaded (entry points are not read)."""
    from flujo.plugins.manager import PluginManager

    return PluginManager()


@pytest.fixture
def registered_plugin(
    flujo_plugin_manager: PluginManager, tmp_path_factory: pytest.TempPathFactory
) -> PluginRegistrar:
    """Register plugin objects for the duration of a ``with`` block.

    ``registered_plugin(plugin, name=None, *, manager=None, settings=None, config_file=None,
    version=None, strict=True)`` returns a context manager yielding a
    :class:`RegisteredPlugin` (``plugin``, ``name``, ``info``, ``manager``, ``config`` and
    ``create(kind, name)``). See :meth:`PluginRegistrar.__call__`.
    """
    return PluginRegistrar(flujo_plugin_manager, tmp_path_factory)


@pytest.fixture
def flujo_config(tmp_path: Path, flujo_plugin_manager: PluginManager) -> FlujoConfig:
    """A configuration rooted at ``tmp_path`` (``config.root == tmp_path``).

    Loads ``tmp_path / "flujo.toml"``, writing :data:`DEFAULT_CONFIG_TOML` there first when no
    file exists, so the SQLite state database is ``tmp_path / ".flujo" / "flujo.db"``. It is
    validated against ``flujo_plugin_manager`` and ignores the process environment.
    """
    from flujo.config import load_config

    path = tmp_path / "flujo.toml"
    if not path.exists():
        path.write_text(DEFAULT_CONFIG_TOML)
    return load_config(path, plugin_manager=flujo_plugin_manager, environ={})


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """A local OpenAI-compatible server, with ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` set.

    OpenAI providers created during the test talk to it over real HTTP on loopback; the
    variables are restored and the server stopped after the test.
    """
    from flujo.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        yield server


@pytest.fixture
def flujo_postgres_uri() -> Iterator[str]:
    """A PostgreSQL URI whose ``search_path`` is a fresh schema, dropped after the test.

    The server is ``FLUJO_TEST_POSTGRES_DSN`` (``.ci/run`` starts one). Without it the test
    skips with the reason, except in CI (``CI=true``), where a missing server is a failure.
    Needs psycopg (``flujo-core[postgres]``).
    """
    import os
    import uuid

    dsn = os.environ.get("FLUJO_TEST_POSTGRES_DSN")
    if not dsn:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but FLUJO_TEST_POSTGRES_DSN is not set: .ci/run starts PostgreSQL")
        pytest.skip("no PostgreSQL: set FLUJO_TEST_POSTGRES_DSN (.ci/run does)")
    psycopg = pytest.importorskip("psycopg", reason="pip install 'flujo-core[postgres]'")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


SQLITE_STATE_FILE = "state.db"
"""The SQLite file :func:`flujo_state_uri` names, in the test's ``tmp_path``."""


@pytest.fixture(params=["sqlite", "postgresql"])
def flujo_state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state database URI, once per backend (test ids ``[sqlite]`` and ``[postgresql]``).

    SQLite: ``sqlite:///<tmp_path>/state.db`` (absolute, so any ``flujo.toml`` may name it; the
    file is created by whatever opens it first). PostgreSQL: :func:`flujo_postgres_uri`'s
    throwaway schema, so that run skips with the reason when ``FLUJO_TEST_POSTGRES_DSN`` is
    not set (fails in CI) and the SQLite one still runs.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / SQLITE_STATE_FILE}"
    uri: str = request.getfixturevalue("flujo_postgres_uri")
    return uri
