"""One way hooks are called: plain calls, in plugin load order, for every hook.

An implementation flujo cannot call that way (``async def``, a generator, ``wrapper=True`` /
``hookwrapper=True``, ``tryfirst``/``trylast``) would otherwise load as ``ok`` and silently do
nothing, so it is a load error. The order is checked with three plugins on every kind of hook:
registration, answer-collecting, first-answer and observer hooks, through a real run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, PolicyDecision, Step, hookimpl
from flujo.application.runtime import Runtime
from flujo.application.scrubbing import active_policy_names
from flujo.domain.events import PolicyDecided, RunFinalized, StepCompleted
from flujo.domain.interfaces import Memory, Migration, ScoredMemory
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import run_flujo as run_cli

MakeDist = Callable[..., Path]


class AsyncRegistration:
    @hookimpl
    async def flujo_register_tools(self, register: Any) -> None:
        register("never.registered", lambda config: print)


class GeneratorRegistration:
    @hookimpl
    def flujo_register_tools(self, register: Any) -> Any:
        register("never.registered", lambda config: print)
        yield


class NewStyleWrapper:
    @hookimpl(wrapper=True)
    def flujo_register_policies(self, register: Any) -> Any:
        return (yield)


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def flujo_step_completed(self, event: Any) -> Any:
        yield


class TryFirst:
    @hookimpl(tryfirst=True)
    def flujo_active_policies(self, config: Any) -> list[str]:
        return ["x"]


class AsyncObserver:
    @hookimpl
    async def flujo_run_finalized(self, event: object) -> None:
        raise AssertionError("never awaited")


@pytest.mark.parametrize(
    ("plugin", "hook", "says"),
    [
        (AsyncRegistration(), "flujo_register_tools", "not an async function"),
        (GeneratorRegistration(), "flujo_register_tools", "not a generator"),
        (NewStyleWrapper(), "flujo_register_policies", "wrapper=True/hookwrapper=True"),
        (OldStyleWrapper(), "flujo_step_completed", "wrapper=True/hookwrapper=True"),
        (TryFirst(), "flujo_active_policies", "tryfirst/trylast are not supported"),
        (AsyncObserver(), "flujo_run_finalized", "not an async function"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_an_implementation_flujo_cannot_call_is_a_load_error(
    plugin: object, hook: str, says: str
) -> None:
    manager = PluginManager()
    info = manager.register(plugin, "odd")
    assert info.status == "error", info
    assert hook in str(info.error)
    assert says in str(info.error)
    # Withdrawn entirely: nothing it registered, no hook left to call.
    assert manager.registry.names("tools") == []
    assert manager.implementations(hook) == []


def test_flujo_plugins_lists_an_async_registration_hook_as_error(
    make_dist: MakeDist, tmp_path: Path
) -> None:
    make_dist(
        "flujo-asyncreg",
        "flujo_asyncreg",
        """
        from flujo import hookimpl

        @hookimpl
        async def flujo_register_tools(register):
            register("never.registered", lambda config: print)
        """,
    )
    env = {"FLUJO_LOAD_PLUGINS": "flujo-asyncreg"}
    proc = run_cli("plugins", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    listed = next(p for p in json.loads(proc.stdout) if p["name"] == "flujo-asyncreg")
    assert listed["status"] == "error"
    assert "flujo_register_tools must be a plain function" in listed["error"]
    assert listed["registered"] == {}


# ------------------------------------------------------------------ order, three plugins


class _Allow:
    def __init__(self, name: str) -> None:
        self.name = name

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW


class _Retriever:
    def __init__(self, who: str) -> None:
        self.who = who

    async def retrieve(
        self, context: PipelineContext, query: str, limit: int, *, filter: Any = None
    ) -> list[ScoredMemory]:
        return [ScoredMemory(Memory(id=self.who, text=self.who), 1.0)]


class Ordered:
    """One of several identical plugins; each call appends ``(hook, plugin)`` to a shared log."""

    def __init__(self, who: str, log: list[tuple[str, str]], *, retrieves: bool = True) -> None:
        self.who, self.log, self.retrieves = who, log, retrieves

    def _saw(self, hook: str) -> None:
        self.log.append((hook, self.who))

    @hookimpl
    def flujo_register_policies(self, register: Any) -> None:
        self._saw("flujo_register_policies")
        register(f"{self.who}.allow", lambda config: _Allow(f"{self.who}.allow"))

    @hookimpl
    def flujo_active_policies(self, config: FlujoConfig) -> Sequence[str]:
        self._saw("flujo_active_policies")
        return [f"{self.who}.allow"]

    @hookimpl
    def flujo_storage_migrations(self, dialect: str) -> Sequence[Migration]:
        self._saw("flujo_storage_migrations")
        return [Migration(self.who, 1, (f"CREATE TABLE t_{self.who} (x TEXT)",))]

    @hookimpl
    def flujo_retriever(self, runtime: Runtime) -> _Retriever | None:
        self._saw("flujo_retriever")
        return _Retriever(self.who) if self.retrieves else None

    @hookimpl
    def flujo_runtime_started(self, runtime: Runtime) -> None:
        self._saw("flujo_runtime_started")

    @hookimpl
    def flujo_runtime_closing(self, runtime: Runtime) -> None:
        self._saw("flujo_runtime_closing")

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted, runtime: Runtime) -> None:
        self._saw("flujo_step_completed")

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        self._saw("flujo_run_finalized")

    @hookimpl
    def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
        self._saw("flujo_policy_decided")


async def _recall(text: str, context: PipelineContext) -> str:
    found = await context.retrieve(text, limit=1)
    return found[0].memory.text


def _order(log: list[tuple[str, str]], hook: str) -> list[str]:
    return [who for name, who in log if name == hook]


async def test_every_hook_runs_its_implementations_in_load_order(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    manager = PluginManager()
    # "a" does not retrieve, so the first answer in load order is "b"'s, not "c"'s.
    for plugin in (Ordered("a", log, retrieves=False), Ordered("b", log), Ordered("c", log)):
        assert manager.register(plugin, plugin.who).status == "ok"
    config = FlujoConfig(plugin_manager=manager)

    assert active_policy_names(config, manager) == ["a.allow", "b.allow", "c.allow"]
    assert [m.owner for m in manager.migrations("sqlite")] == ["a", "b", "c"]

    pipeline = Pipeline([Step.from_callable(_recall, name="recall")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        result = await runner.run_async("tea")
    assert result.succeeded, result.error
    assert result.output == "b"  # the first non-None answer in load order
    assert _order(log, "flujo_retriever") == ["a", "b"]  # "c" is never asked

    for hook in (
        "flujo_register_policies",
        "flujo_runtime_started",
        "flujo_step_completed",
        "flujo_run_finalized",
        "flujo_runtime_closing",
    ):
        assert _order(log, hook) == ["a", "b", "c"], hook
    decided = _order(log, "flujo_policy_decided")
    assert decided
    assert decided == ["a", "b", "c"] * (len(decided) // 3)


def test_load_order_is_by_distribution_name(make_dist: MakeDist) -> None:
    # Installed in the opposite order, and with entry-point values that sort the other way.
    make_dist("flujo-zz", "aa_module", "def flujo_active_policies(config):\n    return ['z']\n")
    make_dist("flujo-aa", "zz_module", "def flujo_active_policies(config):\n    return ['a']\n")
    manager = PluginManager()
    manager.load_entry_points(environ={"FLUJO_LOAD_PLUGINS": "flujo-aa,flujo-zz"})
    assert [p.name for p in manager.plugins if p.status == "ok"] == ["flujo-aa", "flujo-zz"]
    assert manager.call_each("flujo_active_policies", config=None) == [["a"], ["z"]]
