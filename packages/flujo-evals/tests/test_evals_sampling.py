"""Sampling: deterministic, at the configured rate, independent per evaluator, weighted."""

from __future__ import annotations

import math
import uuid

from flujo.domain.models import RunStatus
from flujo_evals.engine import EvalEngine
from flujo_evals.sampling import is_sampled, sample_point, sample_weight
from flujo_evals.settings import EvalSettings


def _bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sd, n * p + sigmas * sd


def test_1000_runs_at_10_percent_fall_within_binomial_bounds() -> None:
    run_ids = [uuid.uuid4().hex for _ in range(1000)]
    sampled = sum(is_sampled("", r, "judge", 0.1) for r in run_ids)
    low, high = _bounds(1000, 0.1)
    assert low <= sampled <= high, sampled


def test_fixed_ids_give_a_fixed_sample_near_the_rate() -> None:
    # The same 1,000 ids every time: a deterministic check, no randomness in the test.
    sampled = [i for i in range(1000) if is_sampled("s", f"run-{i}", "judge", 0.1)]
    assert 1000 * 0.1 - 30 <= len(sampled) <= 1000 * 0.1 + 30
    again = [i for i in range(1000) if is_sampled("s", f"run-{i}", "judge", 0.1)]
    assert sampled == again


def test_same_run_ids_get_the_same_decisions_through_the_engine(state: object) -> None:
    settings = EvalSettings(sampling_rate=0.3, evaluators=["a", "b"], salt="x")
    engine = EvalEngine(settings, {"a": object(), "b": object()}, state)  # type: ignore[arg-type,dict-item]
    ids = [uuid.uuid4().hex for _ in range(300)]
    first = [engine.decisions(r, RunStatus.SUCCEEDED) for r in ids]
    again = EvalEngine(settings, {"a": object(), "b": object()}, state)  # type: ignore[arg-type,dict-item]
    assert first == [again.decisions(r, RunStatus.SUCCEEDED) for r in ids]
    assert any(first)
    assert not all(first)


def test_evaluators_sample_independently() -> None:
    ids = [uuid.uuid4().hex for _ in range(2000)]
    a = [is_sampled("", r, "judge", 0.5) for r in ids]
    b = [is_sampled("", r, "regex", 0.5) for r in ids]
    both = sum(x and y for x, y in zip(a, b, strict=True))
    low, high = _bounds(2000, 0.25)
    assert low <= both <= high, both  # independent: P(both) = 0.5 * 0.5
    assert a != b


def test_salt_changes_the_sample() -> None:
    ids = [f"run-{i}" for i in range(500)]
    assert [sample_point("a", r, "j") for r in ids] != [sample_point("b", r, "j") for r in ids]


def test_rate_edges_and_weights() -> None:
    assert not any(is_sampled("", f"r{i}", "j", 0.0) for i in range(100))
    assert all(is_sampled("", f"r{i}", "j", 1.0) for i in range(100))
    weights = {
        sample_weight(
            salt="",
            run_id=f"r{i}",
            evaluator="j",
            rate=0.25,
            failed=False,
            always_on_failure=True,
        )
        for i in range(200)
    }
    assert weights == {None, 4.0}
    # A failed run evaluated because of evaluate_on_failure was certain to be: weight 1.
    kwargs = {"salt": "", "evaluator": "j", "rate": 0.0, "failed": True}
    assert sample_weight(run_id="r1", always_on_failure=True, **kwargs) == 1.0  # type: ignore[arg-type]
    assert sample_weight(run_id="r1", always_on_failure=False, **kwargs) is None  # type: ignore[arg-type]


def test_failed_runs_follow_sampling_without_evaluate_on_failure() -> None:
    settings = EvalSettings(sampling_rate=0.5, evaluate_on_failure=False, evaluators=["j"])
    engine = EvalEngine(settings, {"j": object()}, None)  # type: ignore[arg-type,dict-item]
    decided = [engine.decisions(f"r{i}", RunStatus.FAILED) for i in range(400)]
    count = sum(1 for d in decided if d)
    low, high = _bounds(400, 0.5)
    assert low <= count <= high
    assert {w for d in decided for _, _, w in d} == {2.0}
