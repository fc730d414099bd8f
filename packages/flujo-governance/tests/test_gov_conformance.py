"""Both policies pass flujo-core's GovernancePolicyConformance, built directly and from
flujo.toml through the plugin's factories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gov_testkit import make_config

from flujo.testing.conformance import GovernancePolicyConformance
from flujo_governance.pii import PIIScrubbingPolicy
from flujo_governance.settings import PIISettings, ToolsSettings
from flujo_governance.tools import ToolAllowlistPolicy

EMAIL = "ana.lopez@example.com"


class TestPIIRedact(GovernancePolicyConformance):
    @pytest.fixture
    def policy(self) -> Any:
        return PIIScrubbingPolicy(PIISettings(mode="redact"))

    @pytest.fixture
    def denied_input(self) -> Any:
        return f"write to {EMAIL} about card 4111 1111 1111 1111"

    @pytest.fixture
    def sensitive_value(self) -> str | None:
        return EMAIL

    @pytest.fixture
    def allowed_input(self) -> Any:
        return "order A-1001 of 2024-01-15 cost $1,234.56 (v1.2.3)"

    @pytest.fixture
    def denied_tool_call(self) -> tuple[str, dict[str, Any]] | None:
        return ("send_mail", {"to": EMAIL})

    @pytest.fixture
    def sensitive_number(self) -> int | None:
        return 4111111111111111


class TestPIIPseudonymize(TestPIIRedact):
    @pytest.fixture
    def policy(self) -> Any:
        return PIIScrubbingPolicy(PIISettings(mode="pseudonymize", inspect_tool_args="fail"))


class TestPIIDeny(TestPIIRedact):
    @pytest.fixture
    def policy(self) -> Any:
        return PIIScrubbingPolicy(PIISettings(mode="deny", inspect_output=True))


class TestPIIFromConfig(TestPIIRedact):
    @pytest.fixture
    def policy(self, tmp_path: Path) -> Any:
        config = make_config(tmp_path, '[governance.pii]\nmode = "pseudonymize"\n')
        assert config.plugin_manager is not None
        return config.plugin_manager.registry.create("policies", "pii", config)


class TestToolAllowlist(GovernancePolicyConformance):
    @pytest.fixture
    def policy(self) -> Any:
        return ToolAllowlistPolicy(ToolsSettings(allow=["search", "get_*"], deny=["drop_*"]))

    @pytest.fixture
    def denied_tool_call(self) -> tuple[str, dict[str, Any]] | None:
        return ("drop_table", {"table": "users"})


class TestToolAllowlistFailFromConfig(TestToolAllowlist):
    @pytest.fixture
    def policy(self, tmp_path: Path) -> Any:
        config = make_config(
            tmp_path,
            '[governance.tools]\ndeny = ["drop_*"]\non_deny = "fail"\n'
            '[[governance.tools.rules]]\ntool = "search"\nwhen.args = { q = "*" }\n',
        )
        assert config.plugin_manager is not None
        return config.plugin_manager.registry.create("policies", "tool_allowlist", config)
