"""``flujo.plugin``: the one module plugin authors import from."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import flujo.plugin
from flujo import ConfigError, FlujoConfig, hookimpl
from flujo.plugins.manager import PluginManager


def test_every_exported_name_resolves() -> None:
    for name in flujo.plugin.__all__:
        assert getattr(flujo.plugin, name) is not None, name
    with pytest.raises(AttributeError):
        _ = flujo.plugin.NoSuchThing


def test_importing_hookimpl_stays_cheap() -> None:
    # A plugin module imports this at every flujo startup: no runner, config or pydantic-ai.
    probe = (
        "import json, sys\nfrom flujo.plugin import hookimpl\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('flujo.application', "
        "'flujo.config', 'pydantic_ai')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


class _Box:
    def __init__(self, config: FlujoConfig) -> None:
        self.config = config


class _Plugin:
    @hookimpl
    def flujo_register_sandboxes(self, register: Any) -> None:
        register("acme.box", _Box)


def test_create_makes_a_registered_object_outside_a_run() -> None:
    manager = PluginManager()
    manager.register(_Plugin(), "acme")
    config = FlujoConfig(plugin_manager=manager)
    box = flujo.plugin.create("sandboxes", "acme.box", config)
    assert isinstance(box, _Box)
    assert box.config is config
    with pytest.raises(
        ConfigError, match=r"unknown sandbox 'nope'; registered: acme\.box \(acme\)"
    ):
        flujo.plugin.create("sandboxes", "nope", config)
    with pytest.raises(ConfigError, match="no plugins loaded"):
        flujo.plugin.create("sandboxes", "acme.box", FlujoConfig())
