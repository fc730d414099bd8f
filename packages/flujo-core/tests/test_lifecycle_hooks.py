"""Lifecycle hooks as a tracing plugin uses them: run and step started, and a step wrapper
whose span is current (``contextvars``) for the step's agent and the tools it calls.

Real runner, real SQLite state, a real pydantic-ai agent driven by the scripted test model
(the only stand-in: no model can be called here).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from flujo import Flujo, FlujoConfig, Pipeline, Step, hookimpl, make_agent_async
from flujo.application.runtime import Runtime
from flujo.domain.events import RunStarted, StepCompleted, StepStarted
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.models import call_tool, scripted_model

SPAN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("span", default=())


class Tracer:
    """Opens a span per step (sync or async context manager) and logs what it sees."""

    def __init__(self, who: str, log: list[str], *, use_async: bool = False) -> None:
        self.who, self.log, self.use_async = who, log, use_async

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.log.append(f"{self.who} run {event.start}")

    @hookimpl
    def flujo_step_started(self, event: StepStarted) -> None:
        self.log.append(f"{self.who} start {event.step_name}")

    @hookimpl
    def flujo_wrap_step(self, event: StepStarted, runtime: Runtime) -> Any:
        name = f"{self.who}:{event.step_name}"
        if self.use_async:
            return self._async_span(name)
        return self._span(name)

    @contextlib.contextmanager
    def _span(self, name: str) -> Iterator[None]:
        token = SPAN.set((*SPAN.get(), name))
        self.log.append(f"enter {name}")
        try:
            yield
        finally:
            self.log.append(f"exit {name}")
            SPAN.reset(token)

    @contextlib.asynccontextmanager
    async def _async_span(self, name: str) -> AsyncIterator[None]:
        with self._span(name):
            yield

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.log.append(f"{self.who} done {event.step.name} span={SPAN.get()}")


async def test_a_step_wrapper_span_is_current_for_the_agent_and_its_tools(tmp_path: Path) -> None:
    log: list[str] = []
    seen_by_tool: list[tuple[str, ...]] = []
    seen_by_step: list[tuple[str, ...]] = []

    async def probe(question: str) -> str:
        """Answer a question."""
        seen_by_tool.append(SPAN.get())
        return "42"

    def after(text: str) -> str:
        seen_by_step.append(SPAN.get())
        return text

    manager = PluginManager()
    assert manager.register(Tracer("a", log), "a-tracer").status == "ok"
    assert manager.register(Tracer("b", log, use_async=True), "b-tracer").status == "ok"
    agent = make_agent_async(
        scripted_model(call_tool("probe", question="q"), "done"), "Ask.", tools=[probe]
    )
    pipeline = Pipeline([Step("ask", agent), Step.from_callable(after, name="after")])
    async with Flujo(
        pipeline, config=FlujoConfig(plugin_manager=manager), state=SQLiteBackend(tmp_path / "s")
    ) as runner:
        result = await runner.run_async("go")
    assert result.succeeded, result.error
    assert seen_by_tool == [("a:ask", "b:ask")]  # the tool ran inside both spans
    assert seen_by_step == [("a:after", "b:after")]
    assert SPAN.get() == ()  # nothing leaks out of the run
    assert log == [
        "a run 0",
        "b run 0",
        "a start ask",
        "b start ask",
        "enter a:ask",  # load order: the first plugin's wrapper is outermost
        "enter b:ask",
        "exit b:ask",
        "exit a:ask",
        "a done ask span=()",  # step finished: after the wrappers exited
        "b done ask span=()",
        "a start after",
        "b start after",
        "enter a:after",
        "enter b:after",
        "exit b:after",
        "exit a:after",
        "a done after span=()",
        "b done after span=()",
    ]
    assert runner.runtime.tasks.failures == []


class Broken:
    """A wrapper that fails in every way it can; the run must not notice."""

    def __init__(self, where: str) -> None:
        self.where = where

    @hookimpl
    def flujo_wrap_step(self, event: StepStarted) -> Any:
        if self.where == "hook":
            raise RuntimeError("hook broke")
        if self.where == "not-a-cm":
            return 42
        if self.where == "exit":

            @contextlib.contextmanager
            def exits_badly() -> Iterator[None]:
                yield
                raise RuntimeError("exit broke")

            return exits_badly()

        @contextlib.contextmanager
        def enters_badly() -> Iterator[None]:
            raise RuntimeError("enter broke")
            yield

        return enters_badly()

    @hookimpl
    def flujo_step_started(self, event: StepStarted) -> None:
        raise RuntimeError("observer broke")


async def test_failing_wrappers_and_observers_are_recorded_never_raised(tmp_path: Path) -> None:
    log: list[str] = []
    manager = PluginManager()
    for where in ("hook", "not-a-cm", "exit", "enter"):
        assert manager.register(Broken(where), f"broken-{where}").status == "ok"
    assert manager.register(Tracer("t", log), "tracer").status == "ok"
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(
        pipeline, config=FlujoConfig(plugin_manager=manager), state=SQLiteBackend(tmp_path / "s")
    ) as runner:
        result = await runner.run_async("go")
        failures = sorted(f.error for f in runner.runtime.tasks.failures)
    assert result.succeeded, result.error
    assert result.output == "GO", result.error
    assert failures == sorted(
        [
            "broken-enter.flujo_wrap_step: RuntimeError('enter broke')",
            "broken-exit.flujo_wrap_step: RuntimeError('exit broke')",
            "broken-hook.flujo_wrap_step: RuntimeError('hook broke')",
            "broken-not-a-cm.flujo_wrap_step: returned int, not a context manager",
        ]
        + [
            f"broken-{w}.flujo_step_started: RuntimeError('observer broke')"
            for w in ("enter", "exit", "hook", "not-a-cm")
        ]
    )
    # The healthy tracer still wrapped the step.
    assert "enter t:up" in log
    assert "exit t:up" in log


_attempts: list[str] = []


def _first(x: str) -> str:
    return x + "-1"


def _flaky(x: str) -> str:
    _attempts.append(x)
    if len(_attempts) == 1:
        raise ConnectionError("provider down")
    return x + "-2"


resumable = Step.from_callable(_first) >> Step.from_callable(_flaky)


class RunLog:
    def __init__(self) -> None:
        self.runs: list[tuple[int, Any]] = []
        self.steps: list[tuple[int, str, Any]] = []

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.runs.append((event.start, event.input))

    @hookimpl
    def flujo_step_started(self, event: StepStarted) -> None:
        self.steps.append((event.index, event.step_name, event.input))


async def test_run_started_is_called_for_a_new_run_and_for_each_resume(tmp_path: Path) -> None:
    _attempts.clear()
    log = RunLog()
    manager = PluginManager()
    manager.register(log, "log")
    config = FlujoConfig(plugin_manager=manager)
    async with Flujo(resumable, config=config, state=SQLiteBackend(tmp_path / "s")) as runner:
        failed = await runner.run_async("in")
        assert not failed.succeeded
        resumed = await runner.resume_async(failed.run_id)
    assert resumed.succeeded, resumed.error
    assert resumed.output == "in-1-2", resumed.error
    # The resume starts at the failed step, with the input that step receives.
    assert log.runs == [(0, "in"), (1, "in-1")]
    assert [(i, data) for i, _, data in log.steps] == [(0, "in"), (1, "in-1"), (1, "in-1")]


_first_attempts: list[str] = []


def _flaky_first(data: str) -> str:
    _first_attempts.append(data)
    if len(_first_attempts) == 1:
        raise RuntimeError("first try fails")
    return f"{data}-ok"


class ResumedLog:
    def __init__(self) -> None:
        self.runs: list[tuple[int, bool]] = []

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.runs.append((event.start, event.resumed))


async def test_run_started_says_whether_the_run_executed_before(tmp_path: Path) -> None:
    """A run that failed at its first step resumes at ``start == 0``: only ``resumed`` tells
    it from a new run (tracing continues the run's trace on it)."""
    _first_attempts.clear()
    log = ResumedLog()
    manager = PluginManager()
    manager.register(log, "log")
    config = FlujoConfig(plugin_manager=manager)
    pipeline = Pipeline([Step.from_callable(_flaky_first, name="first")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s")) as runner:
        failed = await runner.run_async("in")
        assert not failed.succeeded
        resumed = await runner.resume_async(failed.run_id)
        assert resumed.succeeded, resumed.error
        again = await runner.run_async("new")
    assert again.succeeded
    assert log.runs == [(0, False), (0, True), (0, False)]


class Idle:
    """A plugin whose own settings turn it off for this runner."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def flujo_runtime_started(self, runtime: Runtime) -> None:
        runtime.idle_plugins.add("idle")

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.calls.append("run_started")

    @hookimpl
    def flujo_step_started(self, event: StepStarted) -> None:
        self.calls.append("step_started")

    @hookimpl
    def flujo_wrap_step(self, event: StepStarted) -> None:
        self.calls.append("wrap_step")

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.calls.append("step_completed")


async def test_an_idle_plugin_is_not_called_and_no_event_is_built(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Installed but off costs the run nothing: not even the events are built."""
    import flujo.application.execution_manager as em

    built: list[str] = []
    for name in ("RunStarted", "StepStarted", "StepCompleted"):
        real = getattr(em, name)
        monkeypatch.setattr(
            em, name, lambda *a, _n=name, _r=real, **k: built.append(_n) or _r(*a, **k)
        )
    idle, log = Idle(), Idle()
    manager = PluginManager()
    manager.register(idle, "idle")
    config = FlujoConfig(plugin_manager=manager)
    pipeline = Pipeline([Step.from_callable(_first, name="a")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s")) as runner:
        assert (await runner.run_async("x")).succeeded
    assert idle.calls == []
    assert built == []
    manager = PluginManager()
    manager.register(log, "other")  # registered under another name: not idle, called
    config = FlujoConfig(plugin_manager=manager)
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "t")) as runner:
        assert (await runner.run_async("x")).succeeded
    assert log.calls == ["run_started", "step_started", "wrap_step", "step_completed"]
    assert built == ["RunStarted", "StepStarted", "StepCompleted"]
