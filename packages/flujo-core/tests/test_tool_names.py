"""One name per registered tool: its id. The model sees the id's reversible model form
(``acme.sql`` -> ``acme__sql``, valid for OpenAI), policies and the audit see the id, two ids
never clash however their functions are named, and an id that cannot be sent to a model is a
load error naming the plugin.

Real plugin manager and runner, real SQLite state; the model is pydantic-ai's scripted test
model, or flujo's loopback fake OpenAI server (which refuses tool names OpenAI refuses).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import ModelRetry, Tool

from flujo import (
    Flujo,
    FlujoConfig,
    Pipeline,
    PipelineContext,
    PipelineDefinitionError,
    PolicyDecision,
    RunStatus,
    Step,
    make_agent_async,
)
from flujo.domain.scope import model_tool_name, tool_id_of, tool_id_problem
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.fake_openai import FakeOpenAIServer, call_tool, openai_env
from flujo.testing.models import call_tool as scripted_call
from flujo.testing.models import scripted_model


class Recording:
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.aliases: list[tuple[str, ...]] = []
        self.results: list[str] = []

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: PipelineContext, tool_name: str, args: Any) -> Any:
        self.calls.append((str(tool_name), tuple(getattr(tool_name, "ids", ()))))
        self.aliases.append(tuple(getattr(tool_name, "aliases", ())))
        return PolicyDecision.ALLOW

    def inspect_tool_result(self, context: PipelineContext, tool_name: str, result: Any) -> Any:
        self.results.append(str(tool_name))
        return PolicyDecision.ALLOW, result


class SqlPlugin:
    """Registers ``<prefix>.sql``: a function named ``sql`` (as both plugins' are)."""

    def __init__(self, prefix: str, *, as_tool: bool = False) -> None:
        self.prefix, self.as_tool = prefix, as_tool

    def flujo_register_tools(self, register: Any) -> None:
        prefix = self.prefix

        def factory(config: FlujoConfig) -> Any:
            def sql(query: str) -> str:
                """Run a query."""
                return f"{prefix}: {query}"

            return Tool(sql, name="sql") if self.as_tool else sql

        register(f"{prefix}.sql", factory)


def _config(*plugins: tuple[str, object]) -> FlujoConfig:
    manager = PluginManager()
    for name, plugin in plugins:
        info = manager.register(plugin, name)
        assert info.status == "ok", info.error
    return FlujoConfig(plugin_manager=manager)


async def _run(agent: Any, config: FlujoConfig, policy: Recording, tmp_path: Path) -> Any:
    async with Flujo(
        Pipeline([Step("ask", agent)]),
        config=config,
        state=SQLiteBackend(tmp_path / "s.db"),
        policies=[policy],
    ) as runner:
        return await runner.run_async("go")


def test_the_mapping_is_reversible_and_refuses_ids_it_could_not_reverse() -> None:
    for tool_id in ("acme.sql", "flujo.builtins.code_interpreter", "a-b.c_d.e1", "plain"):
        assert tool_id_problem(tool_id) is None
        wire = model_tool_name(tool_id)
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", wire)
        assert tool_id_of(wire) == tool_id
    assert model_tool_name("acme.sql") == "acme__sql"
    # Each would make "__" ambiguous, is empty, or holds what a provider refuses.
    for bad in (
        "acme__sql",
        "acme._sql",
        "acme_.sql",
        "_acme",
        "acme.",
        ".sql",
        "acme..sql",
        "acme sql",
        "acmé.sql",
        "",
        "a.b-",
        "x" * 65,
        "a." * 22 + "b",
    ):
        assert tool_id_problem(bad) is not None, bad


async def test_two_ids_whose_functions_share_a_name_both_work(tmp_path: Path) -> None:
    config = _config(("acme-db", SqlPlugin("acme")), ("other-db", SqlPlugin("other", as_tool=True)))
    model = scripted_model(
        scripted_call("acme__sql", query="q1"), scripted_call("other__sql", query="q2"), "done"
    )
    agent = make_agent_async(model, "Query.", tools=["acme.sql", "other.sql"], config=config)
    policy = Recording()
    result = await _run(agent, config, policy, tmp_path)
    assert result.status is RunStatus.SUCCEEDED, result.error
    # Policies see the id, one name, for the call and for its result.
    assert policy.calls == [("acme.sql", ("acme.sql",)), ("other.sql", ("other.sql",))]
    assert policy.results == ["acme.sql", "other.sql"]
    # Not names, but what a deny list may also match: the model's form, the function's name.
    assert policy.aliases == [("acme__sql", "sql"), ("other__sql", "sql")]
    assert model.requests[1].tool_returns == {"acme__sql": "acme: q1"}
    assert model.requests[2].tool_returns == {"other__sql": "other: q2"}


async def test_over_http_the_model_gets_valid_names_and_policies_the_id(tmp_path: Path) -> None:
    config = _config(("acme-db", SqlPlugin("acme")))
    policy = Recording()
    with FakeOpenAIServer([call_tool("acme__sql", query="q"), "ok"]) as server:
        with pytest.MonkeyPatch.context() as env:
            for key, value in openai_env(server).items():
                env.setenv(key, value)
            agent = make_agent_async(
                "openai-chat:gpt-4o-mini", "Query.", tools=["acme.sql"], config=config
            )
            result = await _run(agent, config, policy, tmp_path)
        first = server.requests[0]
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert [t["function"]["name"] for t in first.body["tools"]] == ["acme__sql"]
    assert policy.calls == [("acme.sql", ("acme.sql",))]


def test_the_fake_server_refuses_a_name_openai_refuses() -> None:
    import json
    import urllib.error
    import urllib.request

    with FakeOpenAIServer(["x"]) as server:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "acme.sql", "parameters": {}}}],
        }
        request = urllib.request.Request(
            server.base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400
    assert "tools[0].function.name" in caught.value.read().decode()


def test_a_function_named_like_an_ids_model_name_is_a_clash_naming_both() -> None:
    config = _config(("acme-db", SqlPlugin("acme")))

    def acme__sql(query: str) -> str:
        """Shadow."""
        return query

    with pytest.raises(PipelineDefinitionError) as caught:
        make_agent_async("test", "x", tools=[acme__sql, "acme.sql"], config=config)
    message = str(caught.value)
    assert "both named 'acme__sql'" in message
    assert "tool id 'acme.sql' of plugin 'acme-db'" in message
    assert "acme__sql" in message


class RetryPlugin:
    """Registers ``acme.flaky``, whose first call asks the model to retry."""

    def flujo_register_tools(self, register: Any) -> None:
        def factory(config: FlujoConfig) -> Any:
            tries: list[int] = []

            def flaky(query: str) -> str:
                """Flaky."""
                tries.append(1)
                if len(tries) == 1:
                    raise ModelRetry("try again with another query")
                return "ok"

            return flaky

        register("acme.flaky", factory)


async def test_a_registered_tools_retry_prompt_reaches_policies_under_its_id(
    tmp_path: Path,
) -> None:
    config = _config(("acme", RetryPlugin()))
    model = scripted_model(
        scripted_call("acme__flaky", query="a"), scripted_call("acme__flaky", query="b"), "done"
    )
    agent = make_agent_async(model, "Query.", tools=["acme.flaky"], config=config)
    policy = Recording()
    result = await _run(agent, config, policy, tmp_path)
    assert result.status is RunStatus.SUCCEEDED, result.error
    # The retry prompt (seen before the next model request) and the real result: the id.
    assert policy.results == ["acme.flaky", "acme.flaky"]


@pytest.mark.parametrize("bad", ["acme__sql", "acme.sql!", "x" * 65])
def test_an_id_no_model_could_call_is_a_load_error_naming_the_plugin(bad: str) -> None:
    class Bad:
        def flujo_register_tools(self, register: Any) -> None:
            register(bad, lambda config: len)

    manager = PluginManager()
    info = manager.register(Bad(), "acme-bad")
    assert info.status == "error"
    assert info.error is not None
    assert info.error.startswith(f"tool id {bad!r} is invalid: ")
    assert manager.registry.names("tools") == []


async def test_tool_ids_resolved_outside_a_runner_share_the_runners_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents built at import (no config given) and the runner started after them use one
    configuration and one plugin manager: plugins are loaded once, not once per agent and
    again for the runner. The installed plugin is simulated by the manager's entry-point
    loading (no distribution can be installed for a test)."""
    loads: list[PluginManager] = []

    def load_entry_points(self: PluginManager, **_: Any) -> None:
        loads.append(self)
        assert self.register(SqlPlugin("acme"), "acme-db").status == "ok"

    monkeypatch.setattr(PluginManager, "load_entry_points", load_entry_points)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///s.db"\n', encoding="utf-8")
    model = scripted_model(scripted_call("acme__sql", query="q1"), "done")
    first = make_agent_async(model, "Query.", tools=["acme.sql"])
    second = make_agent_async(scripted_model("fine"), "Check.", tools=["acme.sql"])
    async with Flujo(Pipeline([Step("ask", first), Step("check", second)])) as runner:
        result = await runner.run_async("go")
        config = runner.runtime.config
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert model.requests[1].tool_returns == {"acme__sql": "acme: q1"}
    assert loads == [config.plugin_manager]
    # A changed flujo.toml is read again (the shared configuration is the current one).
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///t.db"\n', encoding="utf-8")
    make_agent_async(scripted_model("x"), "Again.", tools=["acme.sql"])
    assert len(loads) == 2
