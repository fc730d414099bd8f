"""The engine on its own: budgets, retries, timeouts, parse errors, the circuit breaker,
idempotent rows. Judges failing are recorded with a status, never as a score of 0."""

from __future__ import annotations

import asyncio
from typing import Any

from evals_testkit import Kit, _Counting, _Flaky, _Gated, rows, stored_run
from pydantic_ai.exceptions import ModelConnectionError
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from flujo.domain.models import RunStatus
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.models import scripted_model
from flujo_evals.engine import EvalEngine, Job, utc_midnight
from flujo_evals.evaluators import JudgeEvaluator, RegexEvaluator
from flujo_evals.settings import EvalSettings


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _no_sleep(seconds: float) -> None:
    return None


def _engine(state: SQLiteBackend, evaluators: dict[str, Any], **settings: Any) -> EvalEngine:
    settings.setdefault("sampling_rate", 1.0)
    settings.setdefault("retry_backoff_s", 0.0)
    cfg = EvalSettings(evaluators=list(evaluators), **settings)
    return EvalEngine(cfg, evaluators, state, clock=Clock(), sleep=_no_sleep)


async def test_scored_row_has_everything(state: SQLiteBackend, kit: Kit) -> None:
    kit.cost = 0.002
    engine = _engine(state, {"counting": _Counting(kit)})
    run = await stored_run(state, "r1")
    assert engine.on_run_finalized(run) == 1  # no task manager: queued only
    await engine.flush()
    (row,) = await rows(state)
    assert row["status"] == "scored"
    assert row["score"] == 1.0
    assert row["label"] == "ok"
    assert row["sample_weight"] == 1.0
    assert row["step"] == "$output"
    assert row["cost_usd"] == 0.002
    assert row["billable"] == 1
    assert row["attempts"] == 1
    assert row["rubric_hash"] == "counting-v1"
    assert row["latency_ms"] >= 0


async def test_reevaluation_is_idempotent(state: SQLiteBackend, kit: Kit) -> None:
    engine = _engine(state, {"counting": _Counting(kit)})
    run = await stored_run(state, "r1")
    assert (await engine.run_job(Job(run, "$output", "counting", 1.0))).status == "scored"
    assert (await engine.run_job(Job(run, "$output", "counting", 1.0))).status is None
    assert len(await rows(state)) == 1
    assert kit.calls == ["r1"]


async def test_hourly_budget_records_skipped_budget_rows(state: SQLiteBackend, kit: Kit) -> None:
    engine = _engine(state, {"counting": _Counting(kit)}, max_evals_per_hour=3)
    for i in range(5):
        engine.on_run_finalized(await stored_run(state, f"r{i}"))
    await engine.flush()
    statuses = [r["status"] for r in await rows(state)]
    assert statuses.count("scored") == 3
    assert statuses.count("skipped_budget") == 2
    assert len(kit.calls) == 3  # the judge was not called over budget
    skipped = await rows(state, "status = 'skipped_budget'")
    assert all(r["score"] is None and "max_evals_per_hour" in r["reasoning"] for r in skipped)
    # An hour later the budget has room again.
    engine.clock.now += 3601  # type: ignore[attr-defined]
    engine.on_run_finalized(await stored_run(state, "later"))
    await engine.flush()
    assert (await rows(state, "run_id = 'later'"))[0]["status"] == "scored"


async def test_daily_cost_budget(state: SQLiteBackend, kit: Kit) -> None:
    kit.cost = 0.4
    engine = _engine(state, {"counting": _Counting(kit)}, max_judge_cost_usd_per_day=1.0)
    for i in range(5):
        engine.on_run_finalized(await stored_run(state, f"r{i}"))
    await engine.flush()
    statuses = [r["status"] for r in await rows(state)]
    assert statuses == ["scored"] * 3 + ["skipped_budget"] * 2  # 0 -> 0.4 -> 0.8 -> 1.2: stop
    clock = engine.clock
    clock.now = utc_midnight(clock.now) + 86400 + 1  # type: ignore[attr-defined]
    engine.on_run_finalized(await stored_run(state, "tomorrow"))
    await engine.flush()
    assert (await rows(state, "run_id = 'tomorrow'"))[0]["status"] == "scored"


async def test_budgets_do_not_apply_to_free_evaluators(state: SQLiteBackend) -> None:
    engine = _engine(
        state, {"regex": RegexEvaluator(r"\d")}, max_evals_per_hour=0, max_judge_cost_usd_per_day=0
    )
    for i in range(3):
        engine.on_run_finalized(await stored_run(state, f"r{i}"))
    await engine.flush()
    assert [r["status"] for r in await rows(state)] == ["scored"] * 3


async def test_timeout_is_retried_then_recorded(state: SQLiteBackend, kit: Kit) -> None:
    engine = _engine(state, {"gated": _Gated(kit)}, timeout_s=0.05, max_retries=1)
    engine.on_run_finalized(await stored_run(state, "r1"))
    await engine.flush()
    (row,) = await rows(state)
    assert row["status"] == "timeout"
    assert row["attempts"] == 2
    assert row["score"] is None


async def test_retryable_failures_are_retried_with_backoff(state: SQLiteBackend, kit: Kit) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    kit.flaky_failures = 2
    cfg = EvalSettings(evaluators=["flaky"], sampling_rate=1.0, max_retries=2, retry_backoff_s=0.5)
    engine = EvalEngine(cfg, {"flaky": _Flaky(kit)}, state, sleep=sleep)
    engine.on_run_finalized(await stored_run(state, "r1"))
    await engine.flush()
    (row,) = await rows(state)
    assert row["status"] == "scored"
    assert row["attempts"] == 3
    assert row["score"] == 0.75
    assert waits == [0.5, 1.0]


async def test_retries_are_bounded(state: SQLiteBackend, kit: Kit) -> None:
    kit.flaky_failures = 10
    engine = _engine(state, {"flaky": _Flaky(kit)}, max_retries=2)
    engine.on_run_finalized(await stored_run(state, "r1"))
    await engine.flush()
    (row,) = await rows(state)
    assert row["status"] == "judge_error"
    assert row["attempts"] == 3
    assert row["score"] is None
    assert "connection reset" in row["reasoning"]


async def test_scripted_judge_scores(state: SQLiteBackend) -> None:
    model = scripted_model({"score": 0.8, "label": "good", "reasoning": "correct"})
    judge = JudgeEvaluator(model, "Is 2 + 2 answered correctly?")
    engine = _engine(state, {"judge": judge})
    engine.on_run_finalized(await stored_run(state, "r1"))
    await engine.flush()
    (row,) = await rows(state)
    assert (row["status"], row["score"], row["label"]) == ("scored", 0.8, "good")
    assert row["tokens"] == 15
    assert row["judge_model"] == "scripted"
    assert row["billable"] == 1
    prompt = model.requests[0].user_prompt or ""
    assert '"input": "What is 2 + 2?"' in prompt
    assert '"output": "4"' in prompt


async def test_unparsable_judge_answer_is_a_parse_error_row(state: SQLiteBackend) -> None:
    bad = {"score": 7, "label": "great", "reasoning": "out of range"}
    model = scripted_model(bad, bad)  # pydantic-ai retries the output once
    engine = _engine(state, {"judge": JudgeEvaluator(model, "rubric")})
    engine.on_run_finalized(await stored_run(state, "r1"))
    await engine.flush()
    (row,) = await rows(state)
    assert row["status"] == "parse_error"
    assert row["score"] is None
    assert row["attempts"] == 1
    assert row["tokens"] == 30
    assert model.pending == 0


def _unreachable_model(calls: list[int]) -> FunctionModel:
    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        raise ModelConnectionError("judge-model", "connection refused")

    return FunctionModel(respond, model_name="unreachable")


async def test_unreachable_judge_opens_the_circuit_breaker(state: SQLiteBackend) -> None:
    calls: list[int] = []
    judge = JudgeEvaluator(_unreachable_model(calls), "rubric")
    engine = _engine(
        state,
        {"judge": judge},
        max_retries=1,
        circuit_breaker_threshold=3,
        circuit_breaker_cooldown_s=60,
    )
    now = [0.0]
    engine.breakers["judge"].clock = lambda: now[0]
    for i in range(5):
        engine.on_run_finalized(await stored_run(state, f"r{i}"))
    await engine.flush()
    got = [(r["status"], r["attempts"]) for r in await rows(state)]
    # r0: 2 attempts (retry), r1: 1 attempt then the breaker opens; the rest are not called.
    assert got == [("judge_error", 2), ("judge_error", 1)] + [("skipped_circuit", 0)] * 3
    assert len(calls) == 3
    assert all(r["score"] is None for r in await rows(state))
    # After the cooldown one trial call goes through; it fails, so the breaker reopens.
    now[0] = 61.0
    engine.on_run_finalized(await stored_run(state, "trial"))
    engine.on_run_finalized(await stored_run(state, "after"))
    await engine.flush()
    got_after = {
        r["run_id"]: r["status"] for r in await rows(state, "run_id IN ('trial', 'after')")
    }
    assert got_after == {"trial": "judge_error", "after": "skipped_circuit"}
    assert len(calls) == 4


async def test_skipped_rows_are_replaced_by_a_later_evaluation(
    state: SQLiteBackend, kit: Kit
) -> None:
    engine = _engine(state, {"counting": _Counting(kit)}, max_evals_per_hour=0)
    run = await stored_run(state, "r1")
    await engine.run_job(Job(run, "$output", "counting", 1.0))
    assert [r["status"] for r in await rows(state)] == ["skipped_budget"]
    generous = _engine(state, {"counting": _Counting(kit)})
    await generous.run_job(Job(run, "$output", "counting", 1.0))
    assert [r["status"] for r in await rows(state)] == ["scored"]


async def test_steps_setting_judges_each_step_output(state: SQLiteBackend, kit: Kit) -> None:
    engine = _engine(state, {"counting": _Counting(kit)}, steps=["answer", "missing"])
    engine.on_run_finalized(await stored_run(state, "r1", output="final"))
    await engine.flush()
    (row,) = await rows(state)  # "missing" did not run: no row
    assert row["step"] == "answer"
    assert kit.seen[0].output == "final"  # the step's output, as the evaluator saw it


async def test_failed_run_evaluated_with_weight_one(state: SQLiteBackend, kit: Kit) -> None:
    engine = _engine(state, {"counting": _Counting(kit)}, sampling_rate=0.0)
    engine.on_run_finalized(await stored_run(state, "ok"))
    engine.on_run_finalized(await stored_run(state, "bad", RunStatus.FAILED))
    await engine.flush()
    (row,) = await rows(state)
    assert (row["run_id"], row["sample_weight"], row["score"]) == ("bad", 1.0, 0.0)


async def test_off_when_evaluate_on_failure_is_false(state: SQLiteBackend, kit: Kit) -> None:
    engine = _engine(
        state, {"counting": _Counting(kit)}, sampling_rate=0.0, evaluate_on_failure=False
    )
    engine.on_run_finalized(await stored_run(state, "bad", RunStatus.FAILED))
    await engine.flush()
    assert await rows(state) == []


async def test_concurrent_paid_evaluations_respect_the_hourly_budget(
    state: SQLiteBackend, kit: Kit
) -> None:
    engine = _engine(state, {"counting": _Counting(kit)}, max_evals_per_hour=4)
    jobs = [Job(await stored_run(state, f"r{i}"), "$output", "counting", 1.0) for i in range(10)]
    await asyncio.gather(*(engine.run_job(j) for j in jobs))
    statuses = [r["status"] for r in await rows(state)]
    assert statuses.count("scored") == 4
    assert statuses.count("skipped_budget") == 6
