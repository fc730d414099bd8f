"""``[governance] policies`` accepts every registered policy name, not only flujo-governance's
own: a third party's policy is chosen there as ``pii`` is, and an unknown name fails the
runner's start naming every registered policy and its plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gov_testkit import make_config

from flujo import Flujo, Pipeline, PipelineContext, PolicyDecision, RunStatus, Step, hookimpl
from flujo.domain.errors import ConfigError


class Shout:
    """A third party's policy: blocks inputs written in capitals."""

    name = "no_shouting"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        text = str(data)
        if text.isupper():
            return PolicyDecision.DENY, data
        return PolicyDecision.ALLOW, data


class ShoutPlugin:
    @hookimpl
    def flujo_register_policies(self, register: Any) -> None:
        register("no_shouting", lambda config: Shout())


class Echo:
    """An agent that answers with its input."""

    async def run(self, data: str, *, context: Any = None) -> str:
        return data


def _pipeline() -> Pipeline:
    return Pipeline([Step("echo", Echo())])


async def test_a_third_party_policy_is_chosen_by_name_in_governance(tmp_path: Path) -> None:
    config = make_config(tmp_path, '[governance]\npolicies = ["no_shouting"]\n', ShoutPlugin())
    async with Flujo(_pipeline(), config=config) as runner:
        calm = await runner.run_async("hello")
        loud = await runner.run_async("HELLO")
    assert calm.status is RunStatus.SUCCEEDED
    assert loud.status is RunStatus.BLOCKED


async def test_an_unknown_policy_name_lists_the_registered_ones(tmp_path: Path) -> None:
    config = make_config(tmp_path, '[governance]\npolicies = ["no_shoutin"]\n', ShoutPlugin())
    with pytest.raises(ConfigError) as caught:
        async with Flujo(_pipeline(), config=config) as runner:
            await runner.run_async("hello")
    message = str(caught.value)
    assert "'no_shoutin'" in message
    assert "no_shouting (observer-0)" in message
    assert "pii (flujo-governance)" in message


@pytest.mark.parametrize("bad", ['[""]', '["pii", " "]', "[1]"])
def test_policy_names_must_be_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="policies"):
        make_config(tmp_path, f"[governance]\npolicies = {bad}\n")
