"""Every hookspec is called by the core: one plugin implements them all, a real runner, a real
state database and the CLI's command registration drive it, and each call is recorded.

This is what "exercised" means for a hook: a spec nobody calls fails here, however many test
files mention its name. A new hookspec fails ``test_recorder_implements_every_hookspec`` until
this recorder implements it and the scenario below makes the core call it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, ConfigDict

from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, PolicyDecision, Step, hookimpl
from flujo.application.run_view import plugin_sections
from flujo.application.runtime import Runtime
from flujo.domain.events import PolicyDecided, RunFinalized, RunStarted, StepCompleted, StepStarted
from flujo.domain.interfaces import Memory, Migration, ScoredMemory, StepCommit
from flujo.domain.models import RunRecord
from flujo.domain.operations import Operation
from flujo.plugin import operation
from flujo.plugins.manager import PluginManager, hook_names
from flujo.state.sqlite import SQLiteBackend


def _spec_names() -> set[str]:
    return set(hook_names())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class _AllowAll:
    name = "recorder.allow"

    def __init__(self, config: FlujoConfig) -> None:
        self.config = config

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW


class _Retriever:
    async def retrieve(
        self,
        context: PipelineContext,
        query: str,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredMemory]:
        return [ScoredMemory(Memory(id="m", text=f"recalled {query}"), 1.0)][:limit]


class Recorder:
    """Implements every hookspec; each implementation records its own name when called."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def _saw(self, name: str) -> None:
        self.called.append(name)

    @hookimpl
    def flujo_register_policies(self, register: Any) -> None:
        self._saw("flujo_register_policies")
        register("recorder.allow", _AllowAll)

    @hookimpl
    def flujo_active_policies(self, config: FlujoConfig) -> Sequence[str]:
        self._saw("flujo_active_policies")
        return ["recorder.allow"]

    @hookimpl
    def flujo_register_vector_stores(self, register: Any) -> None:
        self._saw("flujo_register_vector_stores")

    @hookimpl
    def flujo_register_embedders(self, register: Any) -> None:
        self._saw("flujo_register_embedders")

    @hookimpl
    def flujo_register_sandboxes(self, register: Any) -> None:
        self._saw("flujo_register_sandboxes")

    @hookimpl
    def flujo_register_evaluators(self, register: Any) -> None:
        self._saw("flujo_register_evaluators")

    @hookimpl
    def flujo_register_tools(self, register: Any) -> None:
        self._saw("flujo_register_tools")

    @hookimpl
    def flujo_register_state_backends(self, register: Any) -> None:
        self._saw("flujo_register_state_backends")

    @hookimpl
    def flujo_register_engines(self, register: Any) -> None:
        self._saw("flujo_register_engines")

    @hookimpl
    def flujo_register_commands(self, cli: click.Group) -> None:
        self._saw("flujo_register_commands")

    @hookimpl
    def flujo_config_sections(self) -> dict[str, type[BaseModel]]:
        self._saw("flujo_config_sections")
        return {"recorder": _Section}

    @hookimpl
    def flujo_storage_migrations(self, dialect: str) -> Sequence[Migration]:
        self._saw("flujo_storage_migrations")
        return [Migration("recorder", 1, ("CREATE TABLE recorder_rows (x TEXT)",))]

    @hookimpl
    def flujo_retriever(self, runtime: Runtime) -> _Retriever:
        self._saw("flujo_retriever")
        return _Retriever()

    @hookimpl
    def flujo_runtime_started(self, runtime: Runtime) -> None:
        self._saw("flujo_runtime_started")

    @hookimpl
    def flujo_runtime_closing(self, runtime: Runtime) -> None:
        self._saw("flujo_runtime_closing")

    @hookimpl
    def flujo_run_started(self, event: RunStarted, runtime: Runtime) -> None:
        self._saw("flujo_run_started")

    @hookimpl
    def flujo_step_started(self, event: StepStarted, runtime: Runtime) -> None:
        self._saw("flujo_step_started")

    @hookimpl
    def flujo_wrap_step(
        self, event: StepStarted, runtime: Runtime
    ) -> contextlib.AbstractContextManager[None]:
        self._saw("flujo_wrap_step")

        @contextlib.contextmanager
        def around() -> Iterator[None]:
            yield

        return around()

    @hookimpl
    def flujo_wrap_operation(
        self, operation: Operation, runtime: Runtime
    ) -> contextlib.AbstractContextManager[None]:
        self._saw("flujo_wrap_operation")
        return contextlib.nullcontext()

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted, runtime: Runtime) -> None:
        self._saw("flujo_step_completed")

    @hookimpl
    def flujo_step_commit(self, event: StepCompleted, commit: StepCommit) -> None:
        self._saw("flujo_step_commit")

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        self._saw("flujo_run_finalized")

    @hookimpl
    def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
        self._saw("flujo_policy_decided")

    @hookimpl
    def flujo_run_view(self, run: RunRecord) -> None:
        self._saw("flujo_run_view")


async def _recall(text: str, context: PipelineContext) -> str:
    with operation("memory.retrieve"):  # as flujo-memory's retriever reports itself
        found = await context.retrieve(text, limit=1)
    return found[0].memory.text


def test_recorder_implements_every_hookspec() -> None:
    implemented = {name for name in dir(Recorder) if name.startswith("flujo_")}
    assert _spec_names() - implemented == set(), "add the new hooks to Recorder and the scenario"


async def test_the_core_calls_every_hookspec(tmp_path: Path) -> None:
    recorder = Recorder()
    manager = PluginManager()
    info = manager.register(recorder, "recorder")
    assert info.status == "ok", info.error
    manager.add_commands(click.Group("flujo"))
    config = FlujoConfig(plugin_manager=manager)
    pipeline = Pipeline([Step.from_callable(_recall, name="recall")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        result = await runner.run_async("tea")
    assert result.succeeded, result.error
    assert result.output == "recalled tea"
    # A run's view is read after the run, as `flujo runs show` does.
    state = SQLiteBackend(tmp_path / "s.db")
    await state.open(read_only=True)
    try:
        record = await state.get_run(result.run_id)
        assert record is not None
        assert await plugin_sections(record, state, config) == []
    finally:
        await state.close()
    never_called = sorted(_spec_names() - set(recorder.called))
    assert never_called == [], f"hookspecs the core never called: {never_called}"
