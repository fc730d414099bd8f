"""The hooks a plugin implements, each exercised end to end through a real runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from flujo import (
    Flujo,
    FlujoConfig,
    MissingPluginError,
    Pipeline,
    PipelineContext,
    PolicyDecision,
    RunStatus,
    Step,
    hookimpl,
)
from flujo.application.runtime import Runtime
from flujo.domain.events import PolicyDecided, RunFinalized
from flujo.domain.interfaces import Memory, Migration, ScoredMemory
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend


class _Store:
    def __init__(self, config: FlujoConfig) -> None:
        self.config = config


class _Embedder:
    dimension = 3

    def __init__(self, config: FlujoConfig) -> None:
        self.config = config


class _Evaluator:
    name = "always_one"

    def __init__(self, config: FlujoConfig) -> None:
        self.config = config


class Registrations:
    @hookimpl
    def flujo_register_vector_stores(self, register: Any) -> None:
        register("toy_store", _Store)

    @hookimpl
    def flujo_register_embedders(self, register: Any) -> None:
        register("toy_embedder", _Embedder)

    @hookimpl
    def flujo_register_evaluators(self, register: Any) -> None:
        register("always_one", _Evaluator)


def test_named_factories_are_created_with_the_config_on_demand() -> None:
    manager = PluginManager()
    info = manager.register(Registrations(), "toys")
    assert info.registered == {
        "vector_stores": ["toy_store"],
        "embedders": ["toy_embedder"],
        "evaluators": ["always_one"],
    }
    config = FlujoConfig(plugin_manager=manager)
    store = manager.registry.create("vector_stores", "toy_store", config)
    assert isinstance(store, _Store)
    assert store.config is config
    assert manager.registry.create("embedders", "toy_embedder", config).dimension == 3
    assert manager.registry.create("evaluators", "always_one", config).name == "always_one"


class Auditor:
    """Owns an audit table (migrations) and fills it from policy decisions and finished runs."""

    def __init__(self) -> None:
        self.decisions: list[PolicyDecided] = []

    @hookimpl
    def flujo_storage_migrations(self, dialect: str) -> Sequence[Migration]:
        return [
            Migration("auditor", 1, ("CREATE TABLE audit (run_id TEXT, what TEXT)",)),
            Migration("auditor", 2, ("ALTER TABLE audit ADD COLUMN status TEXT",)),
        ]

    @hookimpl
    def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
        self.decisions.append(event)

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        run = event.run

        async def write() -> None:
            await runtime.state.execute(
                "INSERT INTO audit VALUES (:run_id, :what, :status)",
                {"run_id": run.run_id, "what": "finalized", "status": run.status.value},
            )

        runtime.tasks.schedule("audit", write)


class _Deny:
    name = "deny_secret"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        decision = PolicyDecision.DENY if "secret" in str(data) else PolicyDecision.ALLOW
        return decision, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW


async def test_plugin_tables_migrations_and_policy_decisions(tmp_path: Path) -> None:
    auditor = Auditor()
    manager = PluginManager()
    manager.register(auditor, "auditor")
    config = FlujoConfig(plugin_manager=manager)
    db = tmp_path / "s.db"
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(db), policies=[_Deny()]) as r:
        ok = await r.run_async("hello")
        blocked = await r.run_async("a secret")
    assert ok.succeeded
    assert blocked.status is RunStatus.BLOCKED
    assert [(d.policy, d.where, d.decision) for d in auditor.decisions] == [
        ("deny_secret", "input", PolicyDecision.ALLOW),
        ("deny_secret", "input", PolicyDecision.DENY),
    ]
    assert auditor.decisions[1].run_id == blocked.run_id

    # Reopening applies no migration twice; the rows written in the background are there.
    state = SQLiteBackend(db)
    await state.open(manager.migrations("sqlite"))
    rows = await state.fetch_all("SELECT run_id, status FROM audit ORDER BY status DESC")
    applied = await state.fetch_all(
        "SELECT version FROM flujo_migrations WHERE owner = :o", {"o": "auditor"}
    )
    await state.close()
    assert rows == [
        {"run_id": ok.run_id, "status": "succeeded"},
        {"run_id": blocked.run_id, "status": "blocked"},
    ]
    assert applied == [{"version": 1}, {"version": 2}]


class _Retriever:
    async def retrieve(
        self,
        context: PipelineContext,
        query: str,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredMemory]:
        memory = Memory(id="m1", text=f"remembered {query} for {context.run_id[:4]}")
        return [ScoredMemory(memory, 0.9)][:limit]


class MemoryPlugin:
    @hookimpl
    def flujo_retriever(self, runtime: Runtime) -> _Retriever:
        return _Retriever()


async def _recall(text: str, context: PipelineContext) -> str:
    found = await context.retrieve(text, limit=1)
    return found[0].memory.text


async def test_context_retrieve_delegates_to_the_retriever_hook(tmp_path: Path) -> None:
    manager = PluginManager()
    manager.register(MemoryPlugin(), "memory")
    pipeline = Pipeline([Step.from_callable(_recall, name="recall")])
    async with Flujo(
        pipeline, config=FlujoConfig(plugin_manager=manager), state=SQLiteBackend(tmp_path / "s.db")
    ) as runner:
        result = await runner.run_async("tea")
    assert result.output == f"remembered tea for {result.run_id[:4]}"


async def test_context_retrieve_without_a_memory_plugin_names_the_package(
    tmp_path: Path,
) -> None:
    with pytest.raises(MissingPluginError, match="pip install flujo-memory"):
        await PipelineContext().retrieve("x")
    pipeline = Pipeline([Step.from_callable(_recall, name="recall")])
    async with Flujo(
        pipeline,
        config=FlujoConfig(plugin_manager=PluginManager()),
        state=SQLiteBackend(tmp_path / "s.db"),
    ) as runner:
        result = await runner.run_async("tea")
    assert result.status is RunStatus.FAILED
    assert result.error == (
        "MissingPluginError: context.retrieve() needs the 'flujo-memory' plugin: "
        "pip install flujo-memory"
    )
