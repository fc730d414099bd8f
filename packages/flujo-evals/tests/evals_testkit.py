"""Helpers shared by the flujo-evals tests: a kit of test evaluators and stored runs."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from flujo import hookimpl
from flujo.domain.interfaces import EvaluationResult
from flujo.domain.models import RunRecord, RunStatus
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.conformance.evaluator import make_run_record
from flujo_evals.errors import EvaluationFailed


class Kit:
    """Test evaluators, registered as a third-party plugin would register them.

    ``counting`` (paid, costs ``cost`` per call), ``gated`` (waits for ``gate``), ``flaky``
    (fails ``flaky_failures`` times, retryably, then scores).
    """

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.calls: list[str] = []
        self.cost = 0.0
        self.gate: asyncio.Event | None = None
        self.flaky_failures = 0
        self.seen: list[RunRecord] = []

    @hookimpl
    def flujo_register_evaluators(self, register: Any) -> None:
        register("counting", lambda config: _Counting(self))
        register("gated", lambda config: _Gated(self))
        register("flaky", lambda config: _Flaky(self))


class _Counting:
    name = "counting"
    free = False
    rubric_hash = "counting-v1"

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        self.kit.calls.append(run.run_id)
        self.kit.seen.append(run)
        score = 1.0 if run.status is RunStatus.SUCCEEDED else 0.0
        return EvaluationResult(score=score, label="ok", cost_usd=self.kit.cost)


class _Gated:
    name = "gated"
    free = True

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        self.kit.calls.append(run.run_id)
        self.kit.started.set()
        if self.kit.gate is None:
            self.kit.gate = asyncio.Event()
        await self.kit.gate.wait()
        return EvaluationResult(score=0.5, label="waited")


class _Flaky:
    name = "flaky"
    free = True

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        self.kit.calls.append(run.run_id)
        if self.kit.flaky_failures > 0:
            self.kit.flaky_failures -= 1
            raise EvaluationFailed("connection reset", retryable=True, trips_breaker=True)
        return EvaluationResult(score=0.75, label="ok")


async def stored_run(
    state: SQLiteBackend,
    run_id: str,
    status: RunStatus = RunStatus.SUCCEEDED,
    output: Any = "4",
) -> RunRecord:
    """A finished run, stored (so evaluation rows can reference it)."""
    record = make_run_record(status, run_id=run_id, output=output)
    params = inspect.signature(state.create_run).parameters
    if "owner" in params:  # flujo-core with run leases
        await state.create_run(record, owner="evals-tests", lease_s=60.0)  # type: ignore[call-arg]
    else:
        await state.create_run(record)
    return record


async def rows(state: SQLiteBackend, where: str = "1 = 1") -> list[dict[str, Any]]:
    """Every evaluation row matching ``where``, oldest first."""
    return await state.fetch_all(
        f"SELECT * FROM evaluations WHERE {where} ORDER BY created_at, run_id, evaluator"
    )


def length_score(run: RunRecord) -> float:
    """A ``python`` evaluator for the tests: longer outputs score higher (failed runs 0)."""
    return min(1.0, len(str(run.output or "")) / 20)


length_score.deterministic = True  # type: ignore[attr-defined]
