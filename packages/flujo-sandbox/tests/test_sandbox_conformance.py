"""``local`` and ``remote`` (through a sidecar on 127.0.0.1) pass ``SandboxConformance``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flujo_sandbox.plugin
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.conformance import SandboxConformance
from flujo_sandbox.local import LocalSandbox
from flujo_sandbox.remote import RemoteSandbox


class TestLocalSandbox(SandboxConformance):
    """The bubblewrap backend, built directly."""

    @pytest.fixture
    def sandbox(self, local_sandbox: LocalSandbox) -> Any:
        return local_sandbox


class TestRemoteThroughSidecar(SandboxConformance):
    """The HTTP client against ``SandboxServer`` serving a local backend."""

    @pytest.fixture
    def sandbox(self, remote_sandbox: RemoteSandbox) -> Any:
        return remote_sandbox


class TestLocalFromConfig(SandboxConformance):
    """The sandbox as Flujo builds it: the registered ``local`` factory plus ``flujo.toml``."""

    @pytest.fixture
    def sandbox(self, tmp_path: Path, local_sandbox: LocalSandbox) -> Any:
        # local_sandbox: only to skip (or fail in CI) where bubblewrap cannot run.
        toml = tmp_path / "flujo.toml"
        toml.write_text('[sandbox]\nbackend = "local"\ntimeout_s = 20\n', encoding="utf-8")
        pm = PluginManager()
        info = pm.register(flujo_sandbox.plugin, "flujo-sandbox")
        assert info.status == "ok", info.error
        config = load_config(toml, plugin_manager=pm, environ={})
        return pm.registry.create("sandboxes", "local", config)
