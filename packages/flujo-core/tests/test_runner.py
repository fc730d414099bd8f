"""Running pipelines: context, retries, timeouts, failures, limits, policies, background work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flujo import (
    ConfigError,
    Flujo,
    FlujoConfig,
    InputValidationError,
    Pipeline,
    PipelineContext,
    PolicyDecision,
    PolicyViolation,
    RunStatus,
    Step,
    Usage,
    UsageLimits,
    hookimpl,
    record_usage,
)
from flujo.application.runtime import Runtime
from flujo.domain.events import RunFinalized, StepCompleted
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend


class Cart(PipelineContext):
    items: list[str] = []
    note: str = ""


async def _stored(state: SQLiteBackend, run_id: str) -> Any:
    fresh = SQLiteBackend(state.path)
    await fresh.open()
    try:
        return await fresh.get_run(run_id)
    finally:
        await fresh.close()


async def test_context_is_shared_by_steps_and_persisted(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    def add(x: str, context: Cart) -> str:
        context.items = [*context.items, x]
        return x + "!"

    async def note(x: str, context: Cart) -> int:
        context.note = f"{len(context.items)} item(s)"
        return len(x)

    async with Flujo(
        Step.from_callable(add) >> Step.from_callable(note), config=config, state=state
    ) as runner:
        result = await runner.run_async("tea", context={"note": "start"})
    assert result.succeeded
    assert result.output == 4
    stored = await _stored(state, result.run_id)
    assert stored.context["items"] == ["tea"]
    assert stored.context["note"] == "1 item(s)"
    assert stored.context["run_id"] == result.run_id
    assert [s.output for s in stored.steps] == ["tea!", 4]
    assert stored.status is RunStatus.SUCCEEDED
    assert stored.output == 4


async def test_bad_context_is_a_clear_error(config: FlujoConfig, state: SQLiteBackend) -> None:
    def add(x: str, context: Cart) -> str:
        return x

    async with Flujo(Pipeline([Step.from_callable(add)]), config=config, state=state) as runner:
        with pytest.raises(Exception, match="context does not validate as Cart: items"):
            await runner.run_async("x", context={"items": 5})
        with pytest.raises(
            InputValidationError, match="Cart: nope: Extra inputs are not permitted"
        ):
            await runner.run_async("x", context={"nope": 1})


async def test_retries_then_success_counts_attempts(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    calls = []

    def flaky(x: str) -> str:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    async with Flujo(
        Pipeline([Step.from_callable(flaky, max_retries=2)]), config=config, state=state
    ) as runner:
        result = await runner.run_async("x")
    assert result.succeeded
    assert result.steps[0].attempts == 3


async def test_exhausted_retries_fail_the_run_with_the_last_error(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    after = []

    def broken(x: str) -> str:
        raise ValueError("always broken")

    def never(x: str) -> str:
        after.append(x)
        return x

    pipeline = Step.from_callable(broken, max_retries=1) >> Step.from_callable(never)
    async with Flujo(pipeline, config=config, state=state) as runner:
        result = await runner.run_async("x")
    assert result.status is RunStatus.FAILED
    assert result.error == "ValueError: always broken"
    assert result.steps[0].attempts == 2
    assert len(result.steps) == 1
    assert after == []
    stored = await _stored(state, result.run_id)
    assert stored.status is RunStatus.FAILED
    assert stored.error == "ValueError: always broken"
    assert stored.current_step == 0


async def test_timeouts_are_enforced_and_retried(config: FlujoConfig, state: SQLiteBackend) -> None:
    started = asyncio.Event()
    calls = 0

    async def slow(x: str) -> str:
        nonlocal calls
        calls += 1
        started.set()
        if calls == 1:
            await asyncio.Event().wait()  # hangs until cancelled by the timeout
        return "second try"

    async with Flujo(
        Pipeline([Step.from_callable(slow, timeout_s=0.05, max_retries=1)]),
        config=config,
        state=state,
    ) as runner:
        result = await runner.run_async("x")
    assert result.succeeded
    assert result.output == "second try"
    assert result.steps[0].attempts == 2

    async def hang(x: str) -> str:
        await asyncio.Event().wait()
        return x

    async with Flujo(
        Pipeline([Step.from_callable(hang, timeout_s=0.05)]), config=config, state=state
    ) as runner:
        result = await runner.run_async("x")
    assert result.status is RunStatus.FAILED
    assert result.error == "StepTimeoutError: step 'hang' timed out after 0.05s"


class _MeteredAgent:
    """A custom agent that reports model usage the way make_agent_async does."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.calls = 0

    async def run(self, data: Any, *, context: PipelineContext) -> str:
        self.calls += 1
        record_usage(
            Usage(input_tokens=self.tokens, output_tokens=self.tokens, requests=1, cost_usd=0.01)
        )
        return f"{data}+"


async def test_usage_is_recorded_per_step_and_run(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    pipeline = Step("a", _MeteredAgent(10)) >> Step("b", _MeteredAgent(5))
    async with Flujo(pipeline, config=config, state=state) as runner:
        result = await runner.run_async("x")
    assert result.output == "x++"
    assert [s.usage.total_tokens for s in result.steps] == [20, 10]
    assert result.usage.total_tokens == 30
    assert result.usage.requests == 2
    assert result.usage.cost_usd == pytest.approx(0.02)
    stored = await _stored(state, result.run_id)
    assert stored.usage.total_tokens == 30
    assert [s.usage.requests for s in stored.steps] == [1, 1]


async def test_usage_limits_end_the_run_limit_exceeded(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    third = _MeteredAgent(10)
    pipeline = Step("a", _MeteredAgent(10)) >> Step("b", _MeteredAgent(10)) >> Step("c", third)
    async with Flujo(
        pipeline, config=config, state=state, usage_limits=UsageLimits(total_tokens=30)
    ) as runner:
        result = await runner.run_async("x")
    assert result.status is RunStatus.LIMIT_EXCEEDED
    assert result.error == "usage limit exceeded: total_tokens 40 > limit 30"
    assert third.calls == 0
    assert (await _stored(state, result.run_id)).status is RunStatus.LIMIT_EXCEEDED


async def test_usage_limits_from_config(state: SQLiteBackend) -> None:
    from flujo.config import RunSettings

    cfg = FlujoConfig(run=RunSettings(max_requests=1), plugin_manager=PluginManager())
    pipeline = Step("a", _MeteredAgent(1)) >> Step("b", _MeteredAgent(1))
    async with Flujo(pipeline, config=cfg, state=state) as runner:
        result = await runner.run_async("x")
    assert result.status is RunStatus.LIMIT_EXCEEDED
    assert [s.status.value for s in result.steps] == ["succeeded", "limit_exceeded"]


class _Policy:
    def __init__(
        self,
        name: str,
        *,
        deny: str | None = None,
        redact: str | None = None,
        deny_tool: str | None = None,
        raise_on: str | None = None,
    ) -> None:
        self.name, self.deny, self.redact = name, deny, redact
        self.deny_tool, self.raise_on = deny_tool, raise_on
        self.seen: list[Any] = []

    async def inspect_input(
        self, context: PipelineContext, data: Any
    ) -> tuple[PolicyDecision, Any]:
        self.seen.append(data)
        if self.raise_on and self.raise_on in str(data):
            raise RuntimeError("policy backend down")
        if self.deny and self.deny in str(data):
            raise PolicyViolation(self.name, f"input mentions {self.deny!r}")
        if self.redact and self.redact in str(data):
            return PolicyDecision.REDACT, str(data).replace(self.redact, "[REDACTED]")
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.DENY if tool_name == self.deny_tool else PolicyDecision.ALLOW


async def test_policies_redact_deny_and_fail_closed(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    received: list[str] = []

    def agent(x: str) -> str:
        received.append(x)
        return x

    redact = _Policy("redact", redact="4111")
    deny = _Policy("deny", deny="drop", raise_on="explode")
    async with Flujo(
        Pipeline([Step.from_callable(agent)]), config=config, state=state, policies=[redact, deny]
    ) as runner:
        ok = await runner.run_async("card 4111")
        blocked = await runner.run_async("please drop table")
        broken = await runner.run_async("explode")
    assert ok.succeeded
    assert received == ["card [REDACTED]"]
    assert deny.seen[0] == "card [REDACTED]"  # the second policy gets the redacted data
    assert blocked.status is RunStatus.BLOCKED
    assert blocked.error == "policy 'deny' denied the input: input mentions 'drop'"
    assert broken.status is RunStatus.FAILED
    assert broken.error == "policy error: RuntimeError: policy backend down"
    assert received == ["card [REDACTED]"]  # the agent never saw the denied/unchecked inputs
    stored = await _stored(state, blocked.run_id)
    assert stored.status is RunStatus.BLOCKED


async def test_tool_calls_go_through_policies(config: FlujoConfig, state: SQLiteBackend) -> None:
    from flujo.domain.scope import current_step_scope

    ran: list[str] = []

    class ToolAgent:
        async def run(self, data: Any, *, context: PipelineContext) -> str:
            scope = current_step_scope()
            assert scope is not None
            for tool in ("lookup", "drop_table"):
                await scope.guard_tool_call(tool, {"q": data})
                ran.append(tool)
            return "done"

    async with Flujo(
        Pipeline([Step("agent", ToolAgent())]),
        config=config,
        state=state,
        policies=[_Policy("tools", deny_tool="drop_table")],
    ) as runner:
        result = await runner.run_async("x")
    assert result.status is RunStatus.BLOCKED
    assert result.error == "policy 'tools' denied the tool_call: tool call 'drop_table'"
    assert ran == ["lookup"]


class _Observer:
    """A plugin that indexes step outputs in the background, as flujo-memory would."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.indexed: list[Any] = []
        self.finalized: list[str] = []

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted, runtime: Runtime) -> None:
        async def index() -> None:
            await self.release.wait()
            self.indexed.append(event.step.output)

        runtime.tasks.schedule("index", index)

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        self.finalized.append(event.run.status.value)

        async def fail() -> None:
            raise RuntimeError("judge unavailable")

        runtime.tasks.schedule("judge", fail)


async def test_background_work_is_off_the_hot_path_and_drained(state: SQLiteBackend) -> None:
    observer = _Observer()
    manager = PluginManager()
    manager.register(observer, "observer")
    cfg = FlujoConfig(plugin_manager=manager)
    pipeline = Step.from_callable(str.upper, name="up") >> Step.from_callable(str.lower, name="low")
    runner: Flujo[Any] = Flujo(pipeline, config=cfg, state=state)
    result = await runner.run_async("Ab")
    # The run returned while its indexing tasks still wait: nothing blocked the hot path.
    assert result.succeeded
    assert observer.indexed == []
    assert observer.finalized == ["succeeded"]
    assert runner.runtime.tasks.pending >= 2  # the two indexings wait (the judge may have run)
    observer.release.set()
    report = await runner.aclose()
    assert report is not None
    assert report.completed == 2
    assert report.cancelled == 0
    assert sorted(observer.indexed) == ["AB", "ab"]
    assert [f.name for f in runner.runtime.tasks.failures] == ["judge"]
    assert "judge unavailable" in runner.runtime.tasks.failures[0].error


async def test_drain_deadline_cancels_stuck_work(state: SQLiteBackend) -> None:
    from flujo.config import RunSettings

    observer = _Observer()  # never released: its tasks are stuck
    manager = PluginManager()
    manager.register(observer, "observer")
    cfg = FlujoConfig(run=RunSettings(drain_timeout_s=0.05), plugin_manager=manager)
    runner: Flujo[Any] = Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]), config=cfg, state=state
    )
    await runner.run_async("a")
    report = await runner.aclose()
    assert report is not None
    assert report.cancelled == 1
    assert report.completed == 0
    assert any("cancelled" in f.error for f in runner.runtime.tasks.failures)


async def test_a_failing_observer_never_reaches_the_run(state: SQLiteBackend) -> None:
    class Broken:
        @hookimpl
        def flujo_step_completed(self, event: StepCompleted) -> None:  # fewer args is allowed
            raise RuntimeError("observer bug")

    manager = PluginManager()
    manager.register(Broken(), "broken")
    async with Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]),
        config=FlujoConfig(plugin_manager=manager),
        state=state,
    ) as runner:
        result = await runner.run_async("a")
        assert result.succeeded
        assert result.output == "A"
        assert "observer bug" in runner.runtime.tasks.failures[0].error


def test_sync_run_and_context_manager(config: FlujoConfig, state: SQLiteBackend) -> None:
    with Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]), config=config, state=state
    ) as runner:
        assert runner.run("a").output == "A"
        assert runner.run("b").output == "B"


async def test_sync_run_works_inside_a_running_loop(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    runner: Flujo[Any] = Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]), config=config, state=state
    )
    try:
        assert runner.run("inside").output == "INSIDE"
    finally:
        runner.close()


async def test_policies_by_name_from_config(state: SQLiteBackend) -> None:
    from flujo.config import RunSettings

    class Plugin:
        @hookimpl
        def flujo_register_policies(self, register: Any) -> None:
            register("no_drop", lambda config: _Policy("no_drop", deny="drop"))

    manager = PluginManager()
    manager.register(Plugin(), "p")
    cfg = FlujoConfig(run=RunSettings(policies=["no_drop"]), plugin_manager=manager)
    async with Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]), config=cfg, state=state
    ) as runner:
        assert (await runner.run_async("drop it")).status is RunStatus.BLOCKED

    bad = FlujoConfig(run=RunSettings(policies=["missing"]), plugin_manager=manager)
    with pytest.raises(ConfigError, match=r"unknown policy 'missing'; registered: no_drop \(p\)$"):
        await Flujo(
            Pipeline([Step.from_callable(str.upper, name="up")]), config=bad, state=state
        ).run_async("x")


async def test_plugins_may_activate_their_policies_from_their_own_section(
    state: SQLiteBackend,
) -> None:
    from flujo.config import RunSettings

    no_drop, no_rm = _Policy("no_drop", deny="drop"), _Policy("no_rm", deny="rm")

    class Plugin:
        @hookimpl
        def flujo_register_policies(self, register: Any) -> None:
            register("no_drop", lambda config: no_drop)
            register("no_rm", lambda config: no_rm)

        @hookimpl
        def flujo_active_policies(self, config: FlujoConfig) -> list[str]:
            return ["no_drop", "no_rm"]

    manager = PluginManager()
    manager.register(Plugin(), "p")
    cfg = FlujoConfig(run=RunSettings(policies=["no_rm"]), plugin_manager=manager)
    async with Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]), config=cfg, state=state
    ) as runner:
        dropped = await runner.run_async("drop it")
        removed = await runner.run_async("rm it")
    assert dropped.status is RunStatus.BLOCKED
    assert removed.status is RunStatus.BLOCKED
    # [run] policies first, then the plugin's, each once: no_rm saw both inputs first.
    assert no_rm.seen == ["drop it", "rm it"]
    assert no_drop.seen == ["drop it"]
