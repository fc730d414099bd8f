"""``flujo evals backfill``: evaluate stored runs that have no (final) evaluation yet.

A backfill takes the same deterministic sampling decisions as live evaluation, so a run gets
exactly the evaluations, and the weights, it would have got live; keys that already have a
final row (``scored``, ``parse_error``) are skipped, so running it twice does nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flujo.domain.models import RunStatus
from flujo_evals import storage
from flujo_evals.engine import EvalEngine, Job


@dataclass(slots=True)
class Planned:
    """The evaluations one stored run still needs."""

    run_id: str
    todo: list[tuple[str, str, float]]
    """``(step, evaluator, sample_weight)``."""


@dataclass(slots=True)
class BackfillReport:
    """What a backfill did (or, dry, would do)."""

    runs: int = 0
    evaluations: int = 0
    billable: int = 0
    estimated_cost_usd: float = 0.0
    cost_usd: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    stopped_for_budget: bool = False


async def plan(engine: EvalEngine, since: float, limit: int | None) -> list[Planned]:
    """Runs since ``since`` (oldest first, at most ``limit``) with evaluations to do."""
    runs = await storage.finished_runs_since(engine.state, since)
    done = await storage.final_keys(engine.state, since)
    hashes = {n: str(getattr(e, "rubric_hash", "")) for n, e in engine.evaluators.items()}
    planned: list[Planned] = []
    for row in runs:
        todo = [
            (step, name, weight)
            for step, name, weight in engine.decisions(row["run_id"], RunStatus(row["status"]))
            if (row["run_id"], step, name, hashes[name]) not in done
        ]
        if todo:
            planned.append(Planned(row["run_id"], todo))
            if limit is not None and len(planned) >= limit:
                break
    return planned


async def estimate(engine: EvalEngine, planned: list[Planned]) -> BackfillReport:
    """The size and estimated cost of ``planned`` (the dry run)."""
    report = BackfillReport(runs=len(planned))
    for p in planned:
        for _, name, _ in p.todo:
            report.evaluations += 1
            report.billable += 0 if getattr(engine.evaluators[name], "free", False) else 1
    report.estimated_cost_usd = report.billable * await storage.average_billable_cost(engine.state)
    return report


async def run(
    engine: EvalEngine,
    planned: list[Planned],
    *,
    budget_usd: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> BackfillReport:
    """Evaluate ``planned`` one by one; stop once ``budget_usd`` is spent."""
    report = await estimate(engine, planned)
    report.runs = 0
    for p in planned:
        if report.stopped_for_budget:
            break
        record = await engine.state.get_run(p.run_id)
        if record is None:  # deleted meanwhile
            continue
        report.runs += 1
        for step, name, weight in p.todo:
            if budget_usd is not None and report.cost_usd >= budget_usd:
                report.stopped_for_budget = True
                break
            outcome = await engine.run_job(Job(record, step, name, weight))
            report.cost_usd += outcome.cost_usd
            if outcome.status is not None:
                report.statuses[outcome.status] = report.statuses.get(outcome.status, 0) + 1
            if progress is not None:
                progress(1)
    return report
