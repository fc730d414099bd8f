"""Conformance suite for :class:`~flujo.domain.interfaces.Evaluator` implementations."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from flujo.domain.interfaces import EvaluationResult, Evaluator
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage

__all__ = ["EvaluatorConformance", "make_run_record"]


def make_run_record(
    status: RunStatus = RunStatus.SUCCEEDED,
    *,
    input: Any = "What is 2 + 2?",
    output: Any = "4",
    error: str | None = None,
    run_id: str = "conformance-run",
) -> RunRecord:
    """A finished one-step run as the state backend returns it, for evaluator tests.

    A succeeded run has ``output`` and a succeeded step; any other final status has no output,
    an ``error`` (``"step 'answer' failed: boom"`` unless given) and a step with the same
    status. ``RunStatus.RUNNING`` raises :class:`ValueError`.
    """
    if status is RunStatus.RUNNING:
        raise ValueError("evaluators judge finished runs; pass a final status, not RUNNING")
    succeeded = status is RunStatus.SUCCEEDED
    if not succeeded and error is None:
        error = "step 'answer' failed: boom"
    step_status = StepStatus.SUCCEEDED if succeeded else StepStatus(status.value)
    usage = Usage(input_tokens=12, output_tokens=3, requests=1, cost_usd=0.0001)
    step = StepResult(
        name="answer",
        status=step_status,
        output=output if succeeded else None,
        error=None if succeeded else error,
        attempts=1,
        latency_ms=12.5,
        usage=Usage(usage.input_tokens, usage.output_tokens, usage.requests, usage.cost_usd),
    )
    return RunRecord(
        run_id=run_id,
        pipeline_name="conformance",
        pipeline_version="0123456789ab",
        pipeline_ref=None,
        status=status,
        input=input,
        output=output if succeeded else None,
        error=error,
        context={"run_id": run_id},
        usage=usage,
        current_step=1 if succeeded else 0,
        created_at=1_700_000_000.0,
        updated_at=1_700_000_001.5,
        steps=[step],
    )


def _check_result(result: Any, what: str) -> EvaluationResult:
    assert isinstance(result, EvaluationResult), (
        f"evaluate must return an EvaluationResult for {what}, got {type(result).__name__}"
    )
    score = result.score
    assert isinstance(score, (int, float)), f"score must be a number, got {score!r}"
    assert not isinstance(score, bool), f"score must be a number, got {score!r}"
    assert math.isfinite(score), f"score must be in [0, 1], got {score!r}"
    assert 0.0 <= score <= 1.0, f"score must be in [0, 1], got {score!r}"
    assert isinstance(result.label, str), f"label must be a str, got {result.label!r}"
    assert isinstance(result.reasoning, str), f"reasoning must be a str, got {result.reasoning!r}"
    cost = result.cost_usd
    assert isinstance(cost, (int, float)), f"cost_usd must be a number, got {cost!r}"
    assert not isinstance(cost, bool), f"cost_usd must be a number, got {cost!r}"
    assert math.isfinite(cost), f"cost_usd must be >= 0, got {cost!r}"
    assert cost >= 0.0, f"cost_usd must be >= 0, got {cost!r}"
    return result


class EvaluatorConformance:
    """Checks that an evaluator scores runs the way the evals plugin stores and aggregates.

    Subclass it (the class name must start with ``Test``) and provide an ``evaluator``
    fixture::

        from flujo.testing.conformance import EvaluatorConformance

        class TestMyEvaluator(EvaluatorConformance):
            @pytest.fixture
            def evaluator(self):
                return MyEvaluator()

    Optional fixtures: ``run_record`` (default :func:`make_run_record`, a succeeded run) and
    ``failed_run_record`` (default ``make_run_record(RunStatus.FAILED)``); override them to
    give your evaluator the runs it expects. An evaluator whose score depends only on the
    run declares ``deterministic = True`` and is then checked for repeatability.

    Async checks are marked ``@pytest.mark.asyncio``, so they run in pytest-asyncio's strict
    and auto modes alike.
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def evaluator(self) -> Evaluator:
        """The evaluator under test. **Required**: override it in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define an `evaluator` fixture returning the evaluator "
            "to test"
        )

    @pytest.fixture
    def run_record(self) -> RunRecord:
        """A succeeded run to evaluate. Default :func:`make_run_record`."""
        return make_run_record()

    @pytest.fixture
    def failed_run_record(self) -> RunRecord:
        """A failed run to evaluate. Default ``make_run_record(RunStatus.FAILED)``."""
        return make_run_record(RunStatus.FAILED)

    # ------------------------------------------------------------------ checks

    def test_has_a_name(self, evaluator: Evaluator) -> None:
        """``evaluator.name`` is a non-empty string: stored evaluations are keyed by it."""
        name = getattr(evaluator, "name", None)
        assert isinstance(name, str), f"evaluator.name must be a str, got {name!r}"
        assert name.strip(), "evaluator.name must not be empty"

    @pytest.mark.asyncio
    async def test_evaluate_returns_a_valid_result(
        self, evaluator: Evaluator, run_record: RunRecord
    ) -> None:
        """``await evaluate(run)`` returns an ``EvaluationResult`` with a finite ``score`` in
        [0, 1], ``label`` and ``reasoning`` strings, and a finite ``cost_usd >= 0``."""
        _check_result(await evaluator.evaluate(run_record), "a succeeded run")

    @pytest.mark.asyncio
    async def test_evaluates_a_failed_run(
        self, evaluator: Evaluator, failed_run_record: RunRecord
    ) -> None:
        """A failed run (no output, an error, a failed step) is scored like any other run:
        a valid ``EvaluationResult``, not an exception."""
        _check_result(await evaluator.evaluate(failed_run_record), "a failed run")

    @pytest.mark.asyncio
    async def test_does_not_modify_the_run(
        self, evaluator: Evaluator, run_record: RunRecord
    ) -> None:
        """``evaluate`` only reads the run: the record is unchanged afterwards (other plugins
        may be looking at the same object)."""
        before = copy.deepcopy(run_record.to_dict())
        await evaluator.evaluate(run_record)
        assert run_record.to_dict() == before, "evaluate modified the run record"

    @pytest.mark.asyncio
    async def test_deterministic_evaluator_repeats_itself(
        self, evaluator: Evaluator, run_record: RunRecord
    ) -> None:
        """An evaluator declaring ``deterministic = True`` gives the same score and label for
        the same run twice. Skipped for evaluators that do not declare it (e.g. LLM judges)."""
        if getattr(evaluator, "deterministic", False) is not True:
            pytest.skip("the evaluator does not declare deterministic = True")
        first = _check_result(await evaluator.evaluate(run_record), "a succeeded run")
        second = _check_result(await evaluator.evaluate(run_record), "a succeeded run")
        assert (first.score, first.label) == (second.score, second.label), (
            f"first ({first.score}, {first.label!r}), then ({second.score}, {second.label!r})"
        )
