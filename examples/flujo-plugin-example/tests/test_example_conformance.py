"""``deny_words`` passes Flujo's governance-policy conformance suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.conformance import GovernancePolicyConformance

import flujo_plugin_example.plugin
from flujo_plugin_example.policy import DenyWords


class TestDenyWords(GovernancePolicyConformance):
    """The policy built directly."""

    @pytest.fixture
    def policy(self) -> Any:
        return DenyWords(["forbidden", "drop table"])

    @pytest.fixture
    def denied_input(self) -> Any:
        return "this text is FORBIDDEN"

    @pytest.fixture
    def allowed_input(self) -> Any:
        return "hello, world"

    @pytest.fixture
    def denied_tool_call(self) -> tuple[str, dict[str, Any]] | None:
        return ("search", {"query": "please drop table users"})

    @pytest.fixture
    def allowed_tool_call(self) -> tuple[str, dict[str, Any]]:
        return ("search", {"query": "weather in Lisbon"})


class TestDenyWordsFromConfig(TestDenyWords):
    """The same suite against the policy as Flujo builds it: registered factory + flujo.toml."""

    @pytest.fixture
    def policy(self, tmp_path: Path) -> Any:
        toml = tmp_path / "flujo.toml"
        toml.write_text('[example]\nwords = ["forbidden", "drop table"]\n', encoding="utf-8")
        pm = PluginManager()
        info = pm.register(flujo_plugin_example.plugin, "flujo-plugin-example")
        assert info.status == "ok", info.error
        config = load_config(toml, plugin_manager=pm, environ={})
        return pm.registry.create("policies", "deny_words", config)
