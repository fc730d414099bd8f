"""An agent run with a scripted model calls ``flujo.builtins.code_interpreter`` and gets the
result from ``local`` and from ``remote`` via the sidecar; also inside a Flujo pipeline, where
the call goes through governance's tool-call policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import flujo_sandbox.plugin
from flujo import Flujo, Pipeline, PolicyDecision, RunStatus, Step, make_agent_async
from flujo.config import FlujoConfig, load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.models import call_tool, scripted_model
from flujo_sandbox.local import LocalSandbox

TOOL = "flujo.builtins.code_interpreter"
# pydantic-ai names a tool after its function; the registry id is what agents list in tools=.
TOOL_NAME = "flujo__builtins__code_interpreter"  # the id as the model sees it


def _config(tmp_path: Path, sandbox_toml: str) -> FlujoConfig:
    toml = tmp_path / "flujo.toml"
    toml.write_text(
        f'[state]\nuri = "sqlite:///{tmp_path / "flujo.db"}"\n\n[sandbox]\n{sandbox_toml}',
        encoding="utf-8",
    )
    pm = PluginManager()
    info = pm.register(flujo_sandbox.plugin, "flujo-sandbox")
    assert info.status == "ok", info.error
    return load_config(toml, plugin_manager=pm, environ={})


@pytest.fixture(params=["local", "remote"])
def config(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if request.param == "local":
        request.getfixturevalue("local_sandbox")  # skip (or fail in CI) without bubblewrap
        return _config(tmp_path, 'backend = "local"\n')
    sidecar = request.getfixturevalue("sidecar")
    monkeypatch.setenv("FLUJO_SANDBOX_TOKEN", sidecar.token)
    return _config(tmp_path, f'backend = "remote"\napi_url = "{sidecar.url}"\n')


async def test_agent_calls_code_interpreter(config: FlujoConfig) -> None:
    model = scripted_model(call_tool(TOOL_NAME, code="print(6*7)"), "The answer is 42.")
    agent = make_agent_async(model, "Use the code interpreter.", tools=[TOOL], config=config)

    answer = await agent.run("What is 6 times 7?")

    assert answer == "The answer is 42."
    returned = json.loads(model.requests[1].tool_returns[TOOL_NAME])
    assert returned["stdout"] == "42\n"
    assert returned["exit_code"] == 0
    assert returned["error"] is None
    assert returned["backend"] in ("local", "remote(local)")


async def test_tool_reports_bad_language_to_the_model(config: FlujoConfig) -> None:
    model = scripted_model(call_tool(TOOL_NAME, code="x", language="cobol"), "ok")
    agent = make_agent_async(model, "x", tools=[TOOL], config=config)
    await agent.run("go")
    returned = json.loads(model.requests[1].tool_returns[TOOL_NAME])
    assert "cobol" in returned["error"]


class DenyBash:
    """A governance policy allowing the interpreter for Python only."""

    name = "deny_bash"

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: Any, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        self.seen.append((tool_name, args))
        return PolicyDecision.DENY if args.get("language") == "bash" else PolicyDecision.ALLOW


def test_pipeline_run_goes_through_tool_call_policy(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    config = _config(tmp_path, 'backend = "local"\n')
    policy = DenyBash()

    def pipeline_for(turns: list[Any]) -> Pipeline:
        agent = make_agent_async(scripted_model(*turns), "x", tools=[TOOL], config=config)
        return Pipeline([Step("compute", agent)])

    allowed = pipeline_for([call_tool(TOOL_NAME, code="print(6*7)"), "42"])
    with Flujo(allowed, config=config, policies=[policy]) as runner:
        result = runner.run("6*7?")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "42"

    denied = pipeline_for([call_tool(TOOL_NAME, code="rm -rf /", language="bash"), "never"])
    with Flujo(denied, config=config, policies=[policy]) as runner:
        result = runner.run("wipe")
    assert result.status is RunStatus.BLOCKED
    assert [name for name, _ in policy.seen] == [TOOL, TOOL]  # policies see the id
