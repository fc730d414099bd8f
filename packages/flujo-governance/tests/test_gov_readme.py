"""The README documents every configuration key, and its examples validate."""

from __future__ import annotations

import re
from pathlib import Path

from gov_testkit import make_config
from pydantic import BaseModel

from flujo_governance.settings import (
    Condition,
    CustomPatternSettings,
    GovernanceSettings,
    PIIOverride,
    PIISettings,
    ToolRule,
    ToolsOverride,
    ToolsSettings,
)

README = Path(__file__).resolve().parent.parent / "README.md"


def _config_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Configuration: every key")
    return text[start : text.index("\n## ", start + 1)]


def test_every_key_is_documented() -> None:
    section = _config_section()
    models: list[type[BaseModel]] = [
        GovernanceSettings,
        PIISettings,
        CustomPatternSettings,
        PIIOverride,
        ToolsSettings,
        ToolRule,
        Condition,
        ToolsOverride,
    ]
    missing = [
        f"{model.__name__}.{field}"
        for model in models
        for field in model.model_fields
        # `key = ...`, a table header `[governance.key]`, or a dotted key `key.sub = ...`
        if not re.search(rf"(^|[\s.]){field}\s*=|\.{field}\]|^{field}\.", section, re.MULTILINE)
    ]
    assert missing == []


def test_the_examples_validate(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _config_section(), re.DOTALL)
    assert len(blocks) == 4
    config = make_config(tmp_path, "\n".join(blocks))
    settings = config.section("governance", GovernanceSettings)
    assert settings.policies == ["pii", "tool_allowlist"]
    assert settings.pii.patterns[0].name == "EMPLOYEE_ID"
    assert settings.tools.rules[0].when.args == {"table": "tmp_*"}
    assert settings.tools.rules[1].effect == "approve"
