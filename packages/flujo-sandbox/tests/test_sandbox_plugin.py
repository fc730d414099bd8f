"""The plugin as Flujo sees it: registrations, the [sandbox] section, cheap imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from pydantic import ValidationError

import flujo_sandbox.plugin
from flujo import ConfigError, hookimpl
from flujo.config import load_config
from flujo.domain.interfaces import ExecutionResult
from flujo.plugins.manager import PluginManager
from flujo_sandbox.errors import SandboxConfigError
from flujo_sandbox.factory import configured_sandbox
from flujo_sandbox.local import LocalSandbox
from flujo_sandbox.remote import RemoteSandbox
from flujo_sandbox.settings import SandboxSettings

DIST = "flujo-sandbox"


def test_registration_record() -> None:
    pm = PluginManager()
    info = pm.register(flujo_sandbox.plugin, DIST)
    assert info.status == "ok", info.error
    assert info.registered == {
        "sandboxes": ["docker", "e2b", "local", "remote"],
        "tools": ["flujo.builtins.code_interpreter"],
    }
    assert info.sections == ["sandbox"]


def test_config_section_is_strict(tmp_path: Path) -> None:
    pm = PluginManager()
    pm.register(flujo_sandbox.plugin, DIST)
    toml = tmp_path / "flujo.toml"
    toml.write_text('[sandbox]\nbackend = "local"\nbakend = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[sandbox\].*bakend"):
        load_config(toml, plugin_manager=pm, environ={})
    # Any registered name is valid; an unknown one fails where the sandbox is chosen, naming
    # every registered sandbox and its plugin.
    toml.write_text('[sandbox]\nbackend = "podman"\n', encoding="utf-8")
    config = load_config(toml, plugin_manager=pm, environ={})
    with pytest.raises(ConfigError) as caught:
        configured_sandbox(config)
    assert str(caught.value) == (
        "[sandbox] backend: unknown sandbox 'podman'; registered: docker (flujo-sandbox), "
        "e2b (flujo-sandbox), local (flujo-sandbox), remote (flujo-sandbox)"
    )
    toml.write_text("[sandbox.limits]\npids = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="pids"):
        load_config(toml, plugin_manager=pm, environ={})


def test_factories_build_configured_backends(tmp_path: Path) -> None:
    pm = PluginManager()
    pm.register(flujo_sandbox.plugin, DIST)
    toml = tmp_path / "flujo.toml"
    toml.write_text(
        '[sandbox]\napi_url = "http://127.0.0.1:1"\n[sandbox.limits]\npids = 7\n',
        encoding="utf-8",
    )
    config = load_config(toml, plugin_manager=pm, environ={"FLUJO__SANDBOX__TIMEOUT_S": "7"})
    local = pm.registry.create("sandboxes", "local", config)
    assert isinstance(local, LocalSandbox)
    assert local.settings.limits.pids == 7
    remote = pm.registry.create("sandboxes", "remote", config)
    assert isinstance(remote, RemoteSandbox)
    assert remote.settings.timeout_s == 7


class AcmeBox:
    """Another plugin's sandbox (it only echoes: what is tested is that it can be chosen)."""

    def __init__(self, config: object) -> None:
        self.config = config

    async def exec_code(self, code: str, lang: str = "python", **kwargs: object) -> ExecutionResult:
        return ExecutionResult(stdout=f"acme ran {code}", stderr="", exit_code=0, backend="acme")


class AcmePlugin:
    @hookimpl
    def flujo_register_sandboxes(self, register: object) -> None:
        register("acme.box", AcmeBox)  # type: ignore[operator]


def test_another_plugins_sandbox_is_chosen_by_name(tmp_path: Path) -> None:
    pm = PluginManager()
    pm.register(flujo_sandbox.plugin, DIST)
    pm.register(AcmePlugin(), "acme-sandbox")
    toml = tmp_path / "flujo.toml"
    toml.write_text('[sandbox]\nbackend = "acme.box"\n', encoding="utf-8")
    config = load_config(toml, plugin_manager=pm, environ={})
    assert isinstance(configured_sandbox(config), AcmeBox)
    assert isinstance(configured_sandbox(config, "local"), LocalSandbox)
    with pytest.raises(
        ConfigError,
        match=r"^--backend: unknown sandbox 'acme\.bx'; .*"
        r"acme\.box \(acme-sandbox\), docker \(flujo-sandbox\)",
    ):
        configured_sandbox(config, "acme.bx")


def test_settings_model() -> None:
    assert SandboxSettings().backend == "auto"
    with pytest.raises(ValidationError):
        SandboxSettings.model_validate({"limits": {"cpu": 1}})


def test_remote_without_url_is_a_clear_error(tmp_path: Path) -> None:
    pm = PluginManager()
    pm.register(flujo_sandbox.plugin, DIST)
    config = load_config(None, plugin_manager=pm, environ={})
    with pytest.raises(SandboxConfigError, match="api_url"):
        pm.registry.create("sandboxes", "remote", config)


def test_plugin_module_is_cheap_to_import() -> None:
    code = textwrap.dedent(
        """
        import sys
        import flujo_sandbox.plugin
        heavy = [m for m in sys.modules if m.startswith("flujo_sandbox.") and
                 m != "flujo_sandbox.plugin"] + [m for m in ("httpx", "click", "pydantic_ai")
                 if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"plugin.py imported {out}"


def test_found_through_entry_point() -> None:
    try:
        distribution(DIST)
    except PackageNotFoundError:
        reason = f"{DIST} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    pm = PluginManager()
    pm.load_entry_points(environ={})
    info = {i.name: i for i in pm.plugins}[DIST]
    assert info.status == "ok", info.error
    assert info.entry_point == "flujo_sandbox.plugin"
