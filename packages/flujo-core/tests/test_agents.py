"""LLM agents in pipelines: tools through policies, usage, limits, output validation, tool ids.

The model is scripted (``flujo.testing.models``); everything else is real: the pydantic-ai agent
loop, the step coordinator, the policies and the SQLite state.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from flujo import (
    AsyncAgentWrapper,
    ConfigError,
    Flujo,
    FlujoConfig,
    Pipeline,
    PipelineContext,
    PipelineDefinitionError,
    PipelineResult,
    PluginError,
    PolicyDecision,
    PolicyViolation,
    RunStatus,
    Step,
    StepStatus,
    StepTimeoutError,
    UsageLimitExceededError,
    UsageLimits,
    make_agent_async,
)
from flujo.agents.wrapper import DEFAULT_REQUEST_LIMIT
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.models import ScriptExhausted, call_tool, fixed_model, scripted_model


class Weather(BaseModel):
    city: str
    temp_c: int


class TripContext(PipelineContext):
    lookups: list[str] = []


class RecordingPolicy:
    """Allows every tool call except those to ``deny``; remembers what it was asked."""

    name = "recording"

    def __init__(self, deny: Sequence[str] = (), *, reason: str | None = None) -> None:
        self.deny = set(deny)
        self.reason = reason
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    async def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        self.tool_calls.append((tool_name, args))
        if tool_name in self.deny:
            if self.reason is not None:  # deny with a reason of its own
                raise PolicyViolation(self.name, self.reason, where="tool_call")
            return PolicyDecision.DENY
        return PolicyDecision.ALLOW


class Tools:
    """Tools that record their calls, so a test can tell whether they really ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    async def lookup_weather(self, ctx: RunContext[TripContext], city: str) -> str:
        """Current weather for a city."""
        self.ran.append(("lookup_weather", {"city": city}))
        ctx.deps.lookups = [*ctx.deps.lookups, city]  # the pipeline context is the deps
        return f"{city}: 21C, sunny"

    def delete_bookings(self, everything: bool) -> str:
        """Delete bookings."""
        self.ran.append(("delete_bookings", {"everything": everything}))
        return "deleted"


@pytest.fixture
def tools() -> Tools:
    return Tools()


async def run(
    steps: Sequence[Step],
    data: Any,
    *,
    state: SQLiteBackend,
    config: FlujoConfig,
    policies: Sequence[Any] = (),
    usage_limits: UsageLimits | None = None,
) -> PipelineResult:
    async with Flujo(
        Pipeline(steps),
        context_model=TripContext,
        config=config,
        state=state,
        policies=policies,
        usage_limits=usage_limits,
    ) as runner:
        return await runner.run_async(data)


# --------------------------------------------------------------------------- tools and policies


async def test_allowed_tool_runs_and_structured_output_is_returned(
    tools: Tools, state: SQLiteBackend, config: FlujoConfig
) -> None:
    model = scripted_model(
        call_tool("lookup_weather", city="Paris"), {"city": "Paris", "temp_c": 21}
    )
    agent = make_agent_async(model, "Report the weather.", Weather, tools=[tools.lookup_weather])
    policy = RecordingPolicy()

    result = await run(
        [Step("forecast", agent)],
        "Weather in Paris?",
        state=state,
        config=config,
        policies=[policy],
    )

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == Weather(city="Paris", temp_c=21)
    assert policy.tool_calls == [("lookup_weather", {"city": "Paris"})]
    assert tools.ran == [("lookup_weather", {"city": "Paris"})]
    # The tool result went back to the model, and the tool changed the run's context.
    assert model.requests[1].tool_returns == {"lookup_weather": "Paris: 21C, sunny"}
    assert model.requests[0].user_prompt == "Weather in Paris?"
    stored = await state.get_run(result.run_id)
    assert stored is not None
    assert stored.context["lookups"] == ["Paris"]


async def test_denied_tool_never_runs_and_the_run_is_blocked(
    tools: Tools, state: SQLiteBackend, config: FlujoConfig
) -> None:
    model = scripted_model(call_tool("delete_bookings", everything=True), "done")
    agent = make_agent_async(model, "Tidy up.", tools=[tools.delete_bookings])
    policy = RecordingPolicy(deny=["delete_bookings"])

    result = await run(
        [Step("tidy", agent, max_retries=2)],
        "clean",
        state=state,
        config=config,
        policies=[policy],
    )

    assert result.status is RunStatus.BLOCKED
    assert tools.ran == []
    [step] = result.steps
    assert step.status is StepStatus.BLOCKED
    assert step.attempts == 1  # a denial is final, not retried
    assert "policy 'recording' denied the tool_call" in (result.error or "")
    assert model.pending == 1  # the model never heard back
    # The request the model answered before the denial still counts.
    assert (step.usage.requests, step.usage.input_tokens, step.usage.output_tokens) == (1, 10, 5)
    assert result.usage.requests == 1


async def test_denial_among_parallel_tool_calls_stops_every_call(
    tools: Tools, state: SQLiteBackend, config: FlujoConfig
) -> None:
    model = scripted_model(
        [call_tool("lookup_weather", city="Oslo"), call_tool("delete_bookings", everything=False)],
        "done",
    )
    agent = make_agent_async(model, "Do both.", tools=[tools.lookup_weather, tools.delete_bookings])
    policy = RecordingPolicy(deny=["delete_bookings"], reason="deleting is not allowed here")

    result = await run([Step("both", agent)], "go", state=state, config=config, policies=[policy])

    assert result.status is RunStatus.BLOCKED
    assert "deleting is not allowed here" in (result.error or "")
    assert ("delete_bookings", {"everything": False}) not in tools.ran
    assert sorted(name for name, _ in policy.tool_calls) == ["delete_bookings", "lookup_weather"]


async def test_policy_violation_propagates_unchanged_out_of_run(tools: Tools) -> None:
    from flujo.domain.models import Usage
    from flujo.domain.scope import StepScope, reset_step_scope, set_step_scope

    class Gate:
        async def guard_tool_call(
            self, scope: StepScope, tool_name: str, args: dict[str, Any], *, approved: bool = False
        ) -> None:
            raise PolicyViolation("p", f"no {tool_name} with {args}", where="tool_call")

        async def inspect_tool_result(self, scope: StepScope, tool_name: str, result: Any) -> Any:
            return result

    agent = make_agent_async(
        scripted_model(call_tool("delete_bookings", everything=True)),
        "Tidy up.",
        tools=[tools.delete_bookings],
    )
    context = TripContext()
    usage = Usage()
    token = set_step_scope(StepScope("run", "tidy", context, Gate(), None, Usage(), usage))
    try:
        with pytest.raises(PolicyViolation) as caught:
            await agent.run("clean", context=context)
    finally:
        reset_step_scope(token)
    assert caught.value.reason == "no delete_bookings with {'everything': True}"
    assert tools.ran == []
    assert usage.requests == 1


async def test_agent_runs_outside_a_pipeline_without_policies(tools: Tools) -> None:
    agent = make_agent_async(
        scripted_model(call_tool("lookup_weather", city="Rome"), "Rome is sunny"),
        "Report the weather.",
        tools=[tools.lookup_weather],
    )
    context = TripContext()

    assert await agent.run("Weather in Rome?", context=context) == "Rome is sunny"
    assert context.lookups == ["Rome"]
    assert isinstance(agent, AsyncAgentWrapper)
    assert agent.output_type is str
    assert agent.input_type is None


async def test_test_model_tool_calls_pass_through_policies(
    tools: Tools, state: SQLiteBackend, config: FlujoConfig
) -> None:
    agent = make_agent_async(
        fixed_model("all good", call_tools="all"), "Check.", tools=[tools.delete_bookings]
    )
    policy = RecordingPolicy()

    result = await run([Step("check", agent)], "x", state=state, config=config, policies=[policy])

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "all good"
    assert [name for name, _ in policy.tool_calls] == ["delete_bookings"]
    assert [name for name, _ in tools.ran] == ["delete_bookings"]


# --------------------------------------------------------------------------- usage and limits


async def test_usage_is_recorded_per_step_and_for_the_run(
    tools: Tools, state: SQLiteBackend, config: FlujoConfig
) -> None:
    first = make_agent_async(
        scripted_model(call_tool("lookup_weather", city="Lima"), "Lima is warm"),
        "Look it up.",
        tools=[tools.lookup_weather],
    )
    second = make_agent_async(
        scripted_model("LIMA IS WARM", input_tokens=7, output_tokens=3), "Shout it."
    )

    result = await run(
        [Step("lookup", first), Step("shout", second)], "Lima?", state=state, config=config
    )

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "LIMA IS WARM"
    lookup, shout = result.steps
    assert (lookup.usage.requests, lookup.usage.input_tokens, lookup.usage.output_tokens) == (
        2,
        20,
        10,
    )
    assert (shout.usage.requests, shout.usage.total_tokens) == (1, 10)
    assert (result.usage.requests, result.usage.total_tokens) == (3, 40)
    assert result.usage.cost_usd == 0.0  # a scripted model has no price
    stored = await state.get_run(result.run_id)
    assert stored is not None
    assert stored.usage.to_dict() == result.usage.to_dict()
    assert [s.usage.requests for s in stored.steps] == [2, 1]


async def test_request_limit_ends_the_run_limit_exceeded(
    tools: Tools, state: SQLiteBackend, config: FlujoConfig
) -> None:
    model = scripted_model(call_tool("lookup_weather", city="Kyiv"), "Kyiv is cold")
    agent = make_agent_async(model, "Look it up.", tools=[tools.lookup_weather])

    result = await run(
        [Step("lookup", agent, max_retries=3)],
        "Kyiv?",
        state=state,
        config=config,
        usage_limits=UsageLimits(requests=1),
    )

    assert result.status is RunStatus.LIMIT_EXCEEDED
    [step] = result.steps
    assert step.status is StepStatus.LIMIT_EXCEEDED
    assert step.attempts == 1
    assert "usage limit exceeded in step 'lookup'" in (result.error or "")
    assert model.pending == 1  # the second request was never sent
    assert result.usage.requests == 1


async def test_token_limit_ends_the_run_limit_exceeded(
    state: SQLiteBackend, config: FlujoConfig
) -> None:
    agent = make_agent_async(scripted_model("a long answer"), "Answer.")

    result = await run(
        [Step("answer", agent)],
        "q",
        state=state,
        config=config,
        usage_limits=UsageLimits(total_tokens=12),
    )

    assert result.status is RunStatus.LIMIT_EXCEEDED
    assert "total_tokens 15 > limit 12" in (result.error or "")
    assert result.usage.total_tokens == 15  # what the crossing request spent is recorded


async def test_later_steps_get_only_the_budget_left(
    state: SQLiteBackend, config: FlujoConfig
) -> None:
    first = make_agent_async(scripted_model("one"), "Answer.")
    second_model = scripted_model(call_tool("noop"), "two")

    def noop() -> str:
        """Do nothing."""
        return "ok"

    second = make_agent_async(second_model, "Answer.", tools=[noop])

    result = await run(
        [Step("first", first), Step("second", second)],
        "q",
        state=state,
        config=config,
        usage_limits=UsageLimits(requests=2),
    )

    assert result.status is RunStatus.LIMIT_EXCEEDED
    assert [s.status for s in result.steps] == [StepStatus.SUCCEEDED, StepStatus.LIMIT_EXCEEDED]
    assert result.usage.requests == 2
    assert second_model.pending == 1


async def test_limit_errors_are_flujo_errors_outside_a_pipeline() -> None:
    from flujo.domain.models import Usage
    from flujo.domain.scope import StepScope, reset_step_scope, set_step_scope

    async def allow(tool_name: str, args: dict[str, Any]) -> None:
        return None

    spent_before = Usage(input_tokens=5, output_tokens=5, requests=3)
    scope = StepScope(
        "run", "s", TripContext(), allow, UsageLimits(requests=3), spent_before, Usage()
    )
    agent = make_agent_async(scripted_model("never sent"), "Answer.")
    token = set_step_scope(scope)
    try:
        with pytest.raises(UsageLimitExceededError) as caught:
            await agent.run("q", context=TripContext())
    finally:
        reset_step_scope(token)
    assert str(caught.value) == (
        "usage limit exceeded in step 's': The next request would exceed the request_limit of 0 "
        "(budget left for this agent run: requests=0)"
    )
    assert scope.usage.requests == 0


async def test_a_model_stuck_in_a_tool_loop_stops_at_the_default_request_limit(
    state: SQLiteBackend, config: FlujoConfig
) -> None:
    calls: list[int] = []

    def ping() -> str:
        """Ping."""
        calls.append(1)
        return "pong"

    def loop(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("ping", {})])

    agent = make_agent_async(FunctionModel(loop), "Ping forever.", tools=[ping])

    result = await run([Step("loop", agent)], "go", state=state, config=config)

    assert result.status is RunStatus.LIMIT_EXCEEDED
    assert result.usage.requests == DEFAULT_REQUEST_LIMIT
    assert len(calls) == DEFAULT_REQUEST_LIMIT
    assert f"request_limit of {DEFAULT_REQUEST_LIMIT}" in (result.error or "")


# --------------------------------------------------------------------------- output validation


async def test_invalid_output_is_retried_then_fails_with_the_validation_error(
    state: SQLiteBackend, config: FlujoConfig
) -> None:
    bad = {"city": "Paris", "temp_c": "warm"}
    model = scripted_model(bad, bad, bad, bad)
    agent = make_agent_async(model, "Report the weather.", Weather, retries=1)

    result = await run(
        [Step("forecast", agent, max_retries=1)], "Paris?", state=state, config=config
    )

    assert result.status is RunStatus.FAILED
    [step] = result.steps
    assert step.status is StepStatus.FAILED
    assert step.attempts == 2
    assert step.error is not None
    assert "invalid model output" in step.error
    assert "temp_c: Input should be a valid integer" in step.error
    assert model.pending == 0  # 2 step attempts x (1 try + 1 pydantic-ai retry)
    assert step.usage.requests == 4  # failed attempts are paid for too
    stored = await state.get_run(result.run_id)
    assert stored is not None
    assert stored.error == result.error


async def test_a_step_retry_can_recover_from_invalid_output(
    state: SQLiteBackend, config: FlujoConfig
) -> None:
    bad = {"city": "Paris"}
    model = scripted_model(bad, bad, {"city": "Paris", "temp_c": 19})
    agent = make_agent_async(model, "Report the weather.", Weather, retries=1)

    result = await run(
        [Step("forecast", agent, max_retries=1)], "Paris?", state=state, config=config
    )

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == Weather(city="Paris", temp_c=19)
    assert result.steps[0].attempts == 2
    assert result.usage.requests == 3


async def test_non_str_input_is_sent_as_json() -> None:
    model = scripted_model("ok")
    agent = make_agent_async(model, "Read the order.")

    await agent.run({"id": 7, "items": ["tea"]}, context=TripContext())

    assert model.requests[0].user_prompt == '{"id":7,"items":["tea"]}'


async def test_a_short_script_fails_the_step_clearly(
    state: SQLiteBackend, config: FlujoConfig
) -> None:
    def noop() -> str:
        """Do nothing."""
        return "ok"

    agent = make_agent_async(scripted_model(call_tool("noop")), "Answer.", tools=[noop])

    result = await run([Step("s", agent)], "q", state=state, config=config)

    assert result.status is RunStatus.FAILED
    assert "ScriptExhausted" in (result.error or "")
    assert "got request #2 but its script has only 1 turn(s)" in (result.error or "")
    assert issubclass(ScriptExhausted, AssertionError)


# --------------------------------------------------------------------------- timeout


async def test_timeout_stops_a_slow_model() -> None:
    never = asyncio.Event()

    async def stuck(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await never.wait()  # a model that never answers
        raise AssertionError("unreachable")

    agent = make_agent_async(FunctionModel(stuck), "Answer.", timeout_s=0.05, name="slow")

    with pytest.raises(StepTimeoutError, match=re.escape("timed out after 0.05s")):
        await agent.run("q", context=TripContext())


# --------------------------------------------------------------------------- tool ids


class AcmePlugin:
    """A plugin that registers a tool by id, as a third-party package would."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def flujo_register_tools(self, register: Any) -> None:
        def factory(config: FlujoConfig) -> Any:
            calls = self.calls

            def acme_stock(sku: str) -> int:
                """Units of ``sku`` in stock."""
                calls.append(sku)
                return 42

            return acme_stock

        register("acme.stock", factory)


async def test_string_tool_ids_resolve_through_plugins(
    tmp_path: Path, state: SQLiteBackend
) -> None:
    plugin = AcmePlugin()
    manager = PluginManager()
    manager.register(plugin, "acme")
    empty = tmp_path / "flujo.toml"
    empty.write_text("")
    config = load_config(empty, plugin_manager=manager)
    policy = RecordingPolicy()
    agent = make_agent_async(
        scripted_model(call_tool("acme__stock", sku="T-1"), "42 in stock"),
        "Check stock.",
        tools=["acme.stock"],
        config=config,
    )

    result = await run(
        [Step("stock", agent)], "T-1?", state=state, config=config, policies=[policy]
    )

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert plugin.calls == ["T-1"]
    assert policy.tool_calls == [("acme.stock", {"sku": "T-1"})]  # one name: the id


def test_unknown_tool_ids_are_config_errors(tmp_path: Path) -> None:
    manager = PluginManager()
    manager.register(AcmePlugin(), "acme")
    empty = tmp_path / "flujo.toml"
    empty.write_text("")
    config = load_config(empty, plugin_manager=manager)

    with pytest.raises(
        ConfigError, match=re.escape("unknown tool 'acme.nope'; registered: acme.stock (acme)")
    ):
        make_agent_async("test", "x", tools=["acme.nope"], config=config)
    with pytest.raises(ConfigError, match=re.escape("unknown tool 'acme.stock'")):
        make_agent_async("test", "x", tools=["acme.stock"], config=FlujoConfig())


def test_bad_arguments_are_rejected_when_the_agent_is_built() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nosuch'"):
        make_agent_async("nosuch:model", "x")
    with pytest.raises(ConfigError, match="expected 'provider:model-name'"):
        make_agent_async("gpt-4o", "x")
    with pytest.raises(PipelineDefinitionError, match="timeout_s"):
        make_agent_async("test", "x", timeout_s=0)

    def twin() -> str:
        """One."""
        return "1"

    with pytest.raises(PipelineDefinitionError, match="twin"):
        make_agent_async("test", "x", tools=[twin, twin])
    with pytest.raises(PipelineDefinitionError, match="neither a function nor a tool id"):
        make_agent_async("test", "x", tools=[42])  # type: ignore[list-item]


def test_a_tool_factory_must_return_a_function(tmp_path: Path) -> None:
    class Broken:
        def flujo_register_tools(self, register: Any) -> None:
            register("broken.tool", lambda config: "not a function")

    manager = PluginManager()
    manager.register(Broken(), "broken")
    config = load_config(None, plugin_manager=manager, environ={})

    with pytest.raises(PluginError, match="factory returned str, not a function"):
        make_agent_async("test", "x", tools=["broken.tool"], config=config)


def test_importing_flujo_does_not_import_pydantic_ai() -> None:
    code = (
        "import sys, flujo\n"
        "assert 'pydantic_ai' not in sys.modules, 'pydantic_ai imported by import flujo'\n"
        "flujo.make_agent_async\n"
        "assert 'pydantic_ai' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_missing_provider_package_names_flujo_cores_extra() -> None:
    from flujo.agents.wrapper import _install_hint

    missing_openai = ImportError(
        "Please install the `openai` package to use the OpenAI provider, you can use the "
        '`openai` optional group — `pip install "pydantic-ai-slim[openai]"`'
    )
    assert _install_hint("openai", missing_openai) == (
        "the 'openai' provider needs flujo-core's 'openai' extra: "
        'pip install "flujo-core[openai]"'
    )
    # A provider flujo-core has no extra for keeps pydantic-ai's own advice.
    missing_other = ImportError('`pip install "pydantic-ai-slim[anthropic]"`')
    assert _install_hint("anthropic", missing_other) == str(missing_other)
