"""Audit detail travels with the decision: what a policy says with ``decision_detail`` is on
the ``PolicyDecided`` event of that very call, whatever else runs concurrently in the process,
and a decision's reason and rule reach observers scrubbed like everything else.

Real runner, real SQLite state; the policies and the observer are small in-process classes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, PolicyViolation, Step, hookimpl
from flujo.plugin import PolicyDecided, PolicyDecision, decision_detail
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend

SECRET = "SECRET-4711"


class Observer:
    def __init__(self) -> None:
        self.events: list[PolicyDecided] = []

    @hookimpl
    def flujo_policy_decided(self, event: PolicyDecided) -> None:
        self.events.append(event)


class SlowCounter:
    """An async policy that says its detail, then yields to other runs before deciding."""

    name = "counter"

    async def inspect_input(self, context: PipelineContext, data: Any) -> Any:
        decision_detail(rule=f"rule-{data}", entities={"CHAR": len(data)})
        for _ in range(3):
            await asyncio.sleep(0)  # let every other run's policy speak in between
        decision_detail(entities={"CHAR": 1})  # a second call adds to the counts
        return PolicyDecision.REDACT, data.upper()

    def inspect_tool_call(self, context: PipelineContext, tool_name: str, args: Any) -> Any:
        return PolicyDecision.ALLOW


class Quoting:
    """Denies by quoting what it saw; its own ``scrub`` hides the secret everywhere else."""

    name = "quoting"

    def inspect_input(self, context: PipelineContext, data: Any) -> Any:
        if SECRET in data:
            decision_detail(rule=f"no {SECRET}", entities={"SECRET": 1})
            raise PolicyViolation(self.name, f"the input {data!r} holds a secret")
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: PipelineContext, tool_name: str, args: Any) -> Any:
        return PolicyDecision.ALLOW

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return value.replace(SECRET, "<SECRET>") if isinstance(value, str) else value


def _echo(text: str) -> str:
    return text


def _runner(tmp_path: Path, policy: object, observer: Observer) -> Flujo[Any]:
    manager = PluginManager()
    assert manager.register(observer, "observer").status == "ok"
    return Flujo(
        Pipeline([Step.from_callable(_echo, name="echo")]),
        config=FlujoConfig(plugin_manager=manager),
        state=SQLiteBackend(tmp_path / "s.db"),
        policies=[policy],  # type: ignore[list-item]
    )


async def test_each_decision_carries_its_own_detail_across_concurrent_runs(tmp_path: Path) -> None:
    observer = Observer()
    inputs = [f"in{i}" + "x" * i for i in range(24)]
    async with _runner(tmp_path, SlowCounter(), observer) as runner:
        results = await asyncio.gather(*(runner.run_async(text) for text in inputs))
    assert all(r.succeeded for r in results)
    by_run = {r.run_id: text for r, text in zip(results, inputs, strict=True)}
    assert len(observer.events) == len(inputs)
    for event in observer.events:
        text = by_run[event.run_id]
        assert (event.decision, event.where) == (PolicyDecision.REDACT, "input")
        assert event.rule == f"rule-{text}"
        assert event.entities == {"CHAR": len(text) + 1}


async def test_reason_and_rule_reach_observers_scrubbed(tmp_path: Path) -> None:
    observer = Observer()
    async with _runner(tmp_path, Quoting(), observer) as runner:
        result = await runner.run_async(f"my {SECRET}")
    assert result.status.value == "blocked"
    [event] = observer.events
    assert event.decision is PolicyDecision.DENY
    assert event.entities == {"SECRET": 1}
    assert SECRET not in (event.reason or "")
    assert "<SECRET>" in (event.reason or "")
    assert event.rule == "no <SECRET>"


def test_decision_detail_outside_a_run_does_nothing_and_checks_its_arguments() -> None:
    decision_detail(rule="r", entities={"EMAIL": 2})  # a policy's unit test: no runner
    with pytest.raises(TypeError, match=r"entity kind 'an email: a@b\.c' is not a name"):
        decision_detail(entities={"an email: a@b.c": 1})
    with pytest.raises(TypeError, match="count of EMAIL must be an int >= 0"):
        decision_detail(entities={"EMAIL": -1})
    with pytest.raises(TypeError, match="count of EMAIL must be an int >= 0"):
        decision_detail(entities={"EMAIL": True})
    with pytest.raises(ValueError, match="longer than 200"):
        decision_detail(rule="r" * 201)
