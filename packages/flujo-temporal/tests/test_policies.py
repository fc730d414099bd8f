"""A policy refusal inside an activity is recorded exactly as the local engine records it on
SQLite; a step's retries run inside its activity, through the same chain, and count alike."""

from __future__ import annotations

from typing import Any

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from flujo_temporal.worker import worker
from temporal_testkit import Project

from flujo import Flujo
from flujo.config import FlujoConfig, StateSettings
from flujo.domain.interfaces import PolicyDecision
from flujo.domain.models import RunRecord, RunStatus
from flujo.plugin import load_target
from flujo.plugins.manager import PluginManager

PIPE = """
from flujo import PipelineContext, Step

_failed: set[str] = set()


def flaky(text: str, context: PipelineContext) -> str:
    # Fails its first attempt in each run: the step's max_retries=2 recovers it.
    if context.run_id not in _failed:
        _failed.add(context.run_id)
        raise RuntimeError("first attempt fails")
    return text + " with a secret"


def send(text: str) -> str:
    return "sent: " + text


pipeline = Step.from_callable(flaky, max_retries=2) >> Step.from_callable(send)
"""


class NoSecrets:
    """Refuses a step whose input mentions a secret."""

    name = "no_secrets"

    def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
        if isinstance(data, str) and "secret" in data:
            return PolicyDecision.DENY, data
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: Any, tool_name: str, args: Any) -> PolicyDecision:
        return PolicyDecision.ALLOW


def recorded(run: RunRecord) -> tuple[Any, ...]:
    """What a run records, without what differs between any two runs (ids, times)."""
    return (
        run.status,
        run.error,
        run.output,
        run.current_step,
        [(s.name, s.status, s.output, s.error, s.attempts) for s in run.steps],
        run.usage,
    )


async def test_policy_refusal_is_recorded_as_on_sqlite(project: Project) -> None:
    ref = project.write("pipe.py", PIPE) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with (
        worker(config, policies=[NoSecrets()]),
        Flujo(load_target(ref), config=config, pipeline_ref=ref, policies=[NoSecrets()]) as runner,
    ):
        on_temporal = await engine.run(runner, "hello")
        temporal_run = await runner.runtime.state.get_run(on_temporal.run_id)

    local_config = FlujoConfig(
        state=StateSettings(uri=f"sqlite:///{project.root / 'local.db'}"),
        plugin_manager=PluginManager(),
    )
    local = Flujo(load_target(ref), config=local_config, pipeline_ref=ref, policies=[NoSecrets()])
    async with local:
        on_sqlite = await local.run_async("hello")
        sqlite_run = await local.runtime.state.get_run(on_sqlite.run_id)

    assert on_sqlite.status is RunStatus.BLOCKED
    assert temporal_run is not None
    assert sqlite_run is not None
    assert recorded(temporal_run) == recorded(sqlite_run)
    assert temporal_run.steps[0].attempts == 2  # the retry ran inside the activity
    assert (on_temporal.status, on_temporal.error) == (on_sqlite.status, on_sqlite.error)
