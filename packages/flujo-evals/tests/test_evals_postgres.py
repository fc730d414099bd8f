"""The evaluations table and every statement flujo-evals runs, on PostgreSQL.

Runs when ``FLUJO_TEST_POSTGRES_DSN`` is set (``.ci/run`` starts a server); skipped otherwise,
and a failure in CI (``CI=true``) when it is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from evals_testkit import Kit, _Counting, stored_run

from flujo.domain.models import RunStatus
from flujo_evals import storage
from flujo_evals.engine import EvalEngine, Job
from flujo_evals.evaluators import RegexEvaluator
from flujo_evals.settings import EvalSettings
from flujo_evals.summary import summarize


@pytest.fixture
async def pg_state(flujo_postgres_uri: str) -> AsyncIterator[Any]:
    postgres = pytest.importorskip("flujo.state.postgres")
    backend = postgres.PostgresBackend(flujo_postgres_uri)
    await backend.open(storage.migrations("postgresql"))
    try:
        yield backend
    finally:
        await backend.close()


async def test_statements_work_on_postgresql(pg_state: Any, kit: Kit) -> None:
    kit.cost = 0.25
    settings = EvalSettings(
        evaluators=["counting", "regex"], sampling_rate=1.0, max_evals_per_hour=3,
        max_judge_cost_usd_per_day=10.0,
    )  # fmt: skip
    evaluators = {"counting": _Counting(kit), "regex": RegexEvaluator(r"\d")}
    engine = EvalEngine(settings, evaluators, pg_state)
    for i in range(4):
        engine.on_run_finalized(await stored_run(pg_state, f"r{i}"))
    engine.on_run_finalized(await stored_run(pg_state, "bad", RunStatus.FAILED))
    await engine.flush()
    rows = await storage.select_rows(pg_state)
    statuses = sorted((r["evaluator"], r["status"]) for r in rows)
    assert statuses.count(("counting", "scored")) == 3
    assert statuses.count(("counting", "skipped_budget")) == 2
    assert statuses.count(("regex", "scored")) == 5
    assert await storage.billable_calls_since(pg_state, 0) == 3
    assert await storage.billable_cost_since(pg_state, 0) == pytest.approx(0.75)
    assert await storage.average_billable_cost(pg_state) == pytest.approx(0.25)
    # Idempotent: a final row is never replaced; a skipped one is.
    first = next(r for r in rows if r["status"] == "scored")
    run = await pg_state.get_run(first["run_id"])
    again = EvalEngine(settings, evaluators, pg_state)
    assert (await again.run_job(Job(run, first["step"], first["evaluator"], 1.0))).status is None
    skipped = next(r for r in rows if r["status"] == "skipped_budget")
    run = await pg_state.get_run(skipped["run_id"])
    generous = EvalEngine(EvalSettings(evaluators=["counting"]), evaluators, pg_state)
    job = Job(run, skipped["step"], "counting", 1.0)
    assert (await generous.run_job(job)).status == "scored"
    assert len(await storage.select_rows(pg_state)) == 10
    (prefix_row,) = await storage.rows_with_id_prefix(pg_state, first["id"][:10])
    assert prefix_row["id"] == first["id"]
    assert prefix_row["pipeline"] == "conformance"
    keys = await storage.final_keys(pg_state, 0)
    assert len(keys) == 9  # 3 + 5 scored, + the one the generous engine scored
    finished = await storage.finished_runs_since(pg_state, 0)
    assert len(finished) == 5
    groups = {g.group: g for g in summarize(rows, "evaluator")}
    assert groups["regex"].mean is not None
    assert groups["counting"].skipped == 2
