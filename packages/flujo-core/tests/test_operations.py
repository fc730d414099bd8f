"""Operations plugins report (``flujo.plugin.operation``) reach the plugins that wrap them
(``flujo_wrap_operation``): inside a step, in the background work a run's hooks schedule,
and with an explicit runtime; never breaking the operation; costing nothing without a
wrapper.

Real runner and SQLite state; the "tracer" is a test plugin recording what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, Step, hookimpl
from flujo.application.operations import _NOTHING
from flujo.application.runtime import Runtime
from flujo.domain.events import RunFinalized
from flujo.plugin import Operation, operation
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend

CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")


class Tracer:
    """Records each operation's kind, runs and final attributes; makes its name current."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, ...], dict[str, Any], str | None, str]] = []
        self.inside: list[str] = []

    @hookimpl
    def flujo_wrap_operation(self, operation: Operation, runtime: Runtime) -> Any:
        return self._span(operation)

    @contextlib.contextmanager
    def _span(self, op: Operation) -> Iterator[None]:
        token = CURRENT.set(op.kind)
        raised = ""
        try:
            yield
        except BaseException as exc:
            raised = type(exc).__name__
            raise
        finally:
            CURRENT.reset(token)
            self.seen.append((op.kind, op.runs, dict(op.attributes), op.error, raised))


async def _sandboxed(text: str) -> str:
    with operation("sandbox.execute", {"flujo.sandbox.backend": "local"}) as op:
        seen = CURRENT.get()
        op.set({"flujo.sandbox.exit_code": 0})
    return f"{text} ran in {seen}"


def _config(*plugins: tuple[object, str]) -> FlujoConfig:
    manager = PluginManager(strict=True)
    for plugin, name in plugins:
        manager.register(plugin, name)
    return FlujoConfig(plugin_manager=manager)


async def test_an_operation_in_a_step_is_wrapped_with_its_final_attributes(
    tmp_path: Path,
) -> None:
    tracer = Tracer()
    pipeline = Pipeline([Step.from_callable(_sandboxed, name="code")])
    state = SQLiteBackend(tmp_path / "s.db")
    async with Flujo(pipeline, config=_config((tracer, "tracer")), state=state) as runner:
        result = await runner.run_async("print(1)")
    assert result.output == "print(1) ran in sandbox.execute"  # current inside the block
    assert tracer.seen == [
        (
            "sandbox.execute",
            (),
            {"flujo.sandbox.backend": "local", "flujo.sandbox.exit_code": 0},
            None,
            "",
        )
    ]


class Evaluator:
    """Schedules background work from flujo_run_finalized, as flujo-evals does."""

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        run_id = event.run.run_id

        async def evaluate() -> None:
            await asyncio.sleep(0)
            with operation("eval.evaluate", {"flujo.eval.evaluator": "regex"}, runs=[run_id]):
                pass

        runtime.tasks.schedule("evaluate", evaluate)


async def test_background_work_a_run_scheduled_reports_to_that_runner(tmp_path: Path) -> None:
    tracer = Tracer()
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    config = _config((tracer, "tracer"), (Evaluator(), "evaluator"))
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        result = await runner.run_async("a")
    assert [(kind, runs) for kind, runs, *_ in tracer.seen] == [("eval.evaluate", (result.run_id,))]


async def test_a_service_passes_its_runtime_and_an_idle_plugin_is_not_called(
    tmp_path: Path,
) -> None:
    tracer, idle = Tracer(), Tracer()
    config = _config((tracer, "tracer"), (idle, "idle"))
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        await runner.start()
        runner.runtime.idle_plugins.add("idle")
        with operation("memory.index", {"flujo.memory.count": 3}, runtime=runner.runtime) as op:
            op.fail("the store is down")
    assert tracer.seen == [("memory.index", (), {"flujo.memory.count": 3}, "the store is down", "")]
    assert idle.seen == []


def test_outside_a_run_nothing_is_built() -> None:
    """No run and no runtime: the shared do-nothing block (no Operation made)."""
    block = operation("sandbox.execute", {"flujo.sandbox.backend": "local"})
    assert block is _NOTHING
    with block as op:
        op.set({"anything": 1})
        op.fail("ignored")
    assert op.attributes == {}
    assert op.error is None


async def test_without_a_wrapper_a_run_builds_nothing(tmp_path: Path) -> None:
    blocks: list[object] = []

    def step(text: str) -> str:
        blocks.append(operation("sandbox.execute"))
        return text

    pipeline = Pipeline([Step.from_callable(step, name="s")])
    async with Flujo(pipeline, config=_config(), state=SQLiteBackend(tmp_path / "s.db")) as r:
        await r.run_async("x")
    assert blocks == [_NOTHING]


class Broken:
    def __init__(self, how: str) -> None:
        self.how = how

    @hookimpl
    def flujo_wrap_operation(self, operation: Operation) -> Any:
        if self.how == "hook":
            raise RuntimeError("hook broke")
        if self.how == "not-a-cm":
            return 42
        if self.how == "swallow":
            return self._swallow()
        return self._broken()

    @contextlib.contextmanager
    def _broken(self) -> Iterator[None]:
        if self.how == "enter":
            raise RuntimeError("enter broke")
        yield
        raise RuntimeError("exit broke")

    @contextlib.contextmanager
    def _swallow(self) -> Iterator[None]:
        with contextlib.suppress(Exception):
            yield


async def test_broken_wrappers_are_recorded_and_never_change_the_operation(
    tmp_path: Path,
) -> None:
    tracer = Tracer()
    config = _config(
        *((Broken(how), f"broken-{how}") for how in ("hook", "not-a-cm", "enter", "exit")),
        (Broken("swallow"), "swallow"),
        (tracer, "tracer"),
    )
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        await runner.start()
        runtime = runner.runtime
        with operation("memory.retrieve", runtime=runtime) as op:
            op.set({"flujo.memory.hits": 2})
        with (
            pytest.raises(ValueError, match="the store said no"),  # not swallowed
            operation("memory.retrieve", runtime=runtime),
        ):
            raise ValueError("the store said no")
        failures = [(f.name, f.error) for f in runtime.tasks.failures]
    assert ("broken-hook.flujo_wrap_operation", "RuntimeError('hook broke')") in failures
    assert (
        "broken-not-a-cm.flujo_wrap_operation",
        "returned int, not a context manager",
    ) in failures
    assert ("broken-enter.flujo_wrap_operation", "RuntimeError('enter broke')") in failures
    assert ("broken-exit.flujo_wrap_operation", "RuntimeError('exit broke')") in failures
    assert [(kind, attrs, raised) for kind, _, attrs, _, raised in tracer.seen] == [
        ("memory.retrieve", {"flujo.memory.hits": 2}, ""),
        ("memory.retrieve", {}, "ValueError"),
    ]


def test_a_bad_kind_or_attribute_is_an_error_where_it_is_made() -> None:
    with pytest.raises(ValueError, match="dot-separated lower-case"):
        Operation("Sandbox Execute")
    op = Operation("sandbox.execute")
    with pytest.raises(TypeError, match=r"'flujo\.sandbox\.code': list"):
        op.set({"flujo.sandbox.code": ["print(1)"]})  # type: ignore[dict-item]


class IdleTracer(Tracer):
    """Installed but off for this runner (as flujo-otel without an endpoint)."""

    @hookimpl
    def flujo_runtime_started(self, runtime: Runtime) -> None:
        runtime.idle_plugins.add("idle")


async def test_an_idle_plugin_is_not_called_for_a_runs_operations(tmp_path: Path) -> None:
    idle, tracer = IdleTracer(), Tracer()
    pipeline = Pipeline([Step.from_callable(_sandboxed, name="code")])
    config = _config((idle, "idle"), (tracer, "tracer"))
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as r:
        await r.run_async("x")
    assert idle.seen == []
    assert [kind for kind, *_ in tracer.seen] == ["sandbox.execute"]
