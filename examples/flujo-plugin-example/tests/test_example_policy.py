"""Unit tests of the ``deny_words`` policy, its settings and the plugin module itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from flujo.plugin import GovernancePolicy, PipelineContext, PolicyDecision, PolicyViolation
from pydantic import BaseModel, ValidationError

from flujo_plugin_example.policy import DenyWords
from flujo_plugin_example.settings import ExampleSettings


@pytest.fixture
def policy() -> DenyWords:
    return DenyWords(["password", "drop table", "c++"])


@pytest.fixture
def context() -> PipelineContext:
    return PipelineContext()


def test_is_a_governance_policy(policy: DenyWords) -> None:
    assert isinstance(policy, GovernancePolicy)
    assert policy.name == "deny_words"


@pytest.mark.parametrize(
    "text",
    [
        "my password is hunter2",
        "My PASSWORD is hunter2",
        "Password: hunter2",
        "password",
        "(password)",
        "please DROP TABLE users",
        "I write C++ all day",
    ],
)
def test_denies_inputs_with_a_word(policy: DenyWords, context: PipelineContext, text: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        policy.inspect_input(context, text)
    assert info.value.policy == "deny_words"
    assert info.value.where == "input"
    assert info.value.reason.startswith("input contains '")


def test_reason_names_the_word(policy: DenyWords, context: PipelineContext) -> None:
    with pytest.raises(PolicyViolation, match="input contains 'password'"):
        policy.inspect_input(context, "My PASSWORD")


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "passwords are hashed",  # whole words only
        "passwordless login",
        "drop tables",
        "droptable",
        "",
    ],
)
def test_allows_other_inputs_unchanged(
    policy: DenyWords, context: PipelineContext, text: str
) -> None:
    assert policy.inspect_input(context, text) == (PolicyDecision.ALLOW, text)


class Query(BaseModel):
    text: str
    tags: list[str] = []


@pytest.mark.parametrize(
    "data",
    [
        {"q": "the password"},
        ["ok", ("nested", {"deep": "Password"})],
        Query(text="fine", tags=["password"]),
        b"password",
    ],
)
def test_looks_inside_structured_inputs(
    policy: DenyWords, context: PipelineContext, data: Any
) -> None:
    with pytest.raises(PolicyViolation):
        policy.inspect_input(context, data)


def test_non_text_inputs_are_allowed(policy: DenyWords, context: PipelineContext) -> None:
    assert policy.inspect_input(context, 42) == (PolicyDecision.ALLOW, 42)
    assert policy.inspect_input(context, None) == (PolicyDecision.ALLOW, None)


def test_no_words_allows_everything(context: PipelineContext) -> None:
    policy = DenyWords([])
    assert policy.inspect_input(context, "password") == (PolicyDecision.ALLOW, "password")
    assert policy.inspect_tool_call(context, "t", {"a": "password"}) is PolicyDecision.ALLOW


def test_tool_calls(policy: DenyWords, context: PipelineContext) -> None:
    assert policy.inspect_tool_call(context, "search", {"query": "weather"}) is PolicyDecision.ALLOW
    with pytest.raises(PolicyViolation) as info:
        policy.inspect_tool_call(context, "search", {"query": "reset my Password"})
    assert info.value.where == "tool_call"
    assert "'search'" in info.value.reason


def test_settings_forbid_unknown_keys() -> None:
    assert ExampleSettings().words == []
    assert ExampleSettings(words=[" a "]).words == ["a"]
    with pytest.raises(ValidationError):
        ExampleSettings.model_validate({"words": ["a"], "wrods": ["b"]})
    with pytest.raises(ValidationError):
        ExampleSettings.model_validate({"words": "password"})
    with pytest.raises(ValidationError):
        ExampleSettings.model_validate({"words": [""]})


def test_plugin_module_is_cheap_to_import() -> None:
    """Flujo imports plugin.py at every startup: it must not pull in the policy, the settings,
    the command or click."""
    code = textwrap.dedent(
        """
        import sys
        import flujo_plugin_example.plugin
        heavy = [m for m in ("click", "flujo_plugin_example.policy",
                             "flujo_plugin_example.settings", "flujo_plugin_example.commands")
                 if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"plugin.py imported {out} at import time"
