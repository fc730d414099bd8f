"""Helpers for flujo-governance's tests: a plugin manager with the plugin (and optional
observers) and a config written from TOML."""

from __future__ import annotations

import json
from pathlib import Path

import flujo_governance.plugin
from flujo.config import FlujoConfig, load_config
from flujo.plugins.manager import PluginManager

DIST = "flujo-governance"


def make_config(
    tmp_path: Path, toml: str, *observers: object, state_uri: str = "sqlite:///flujo.db"
) -> FlujoConfig:
    """``toml`` (plus a state database, by default SQLite in ``tmp_path``) validated with the
    plugin registered by hand, and ``observers`` registered as other plugins."""
    path = tmp_path / "flujo.toml"
    path.write_text(f"[state]\nuri = {json.dumps(state_uri)}\n\n" + toml, encoding="utf-8")
    pm = PluginManager()
    info = pm.register(flujo_governance.plugin, DIST)
    assert info.status == "ok", info.error
    for i, observer in enumerate(observers):
        other = pm.register(observer, f"observer-{i}")
        assert other.status == "ok", other.error
    return load_config(path, plugin_manager=pm, environ={})


def database_bytes(tmp_path: Path, name: str = "flujo.db") -> bytes:
    """The SQLite file and its -wal/-shm companions, concatenated."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.name.startswith(name))
