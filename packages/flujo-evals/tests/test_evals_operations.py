"""Each shadow evaluation is reported to the core as an ``eval.evaluate`` operation serving
the run it judges (a tracing plugin's span linked to that run's trace): evaluator, step,
status, score, whichever task runs it (a background worker, or ``flush()`` from outside the
run); never the run's data or the judge's reasoning; a judge that cannot score is reported
as failed.

A real runner configured by a flujo.toml; the "tracer" is the core's test plugin
(``flujo.testing.operations.OperationRecorder``); flujo-otel's span of it is checked with
every package installed, in ``tests/integration``.
"""

from __future__ import annotations

from typing import Any

from flujo import Flujo, Pipeline, RunStatus, Step
from flujo.testing.operations import OperationRecorder
from flujo_evals.engine import SERVICE

SECRET = "vault code 7781"


def answer(text: str) -> str:
    return text.upper()


async def test_each_evaluation_is_reported_with_its_run_and_score(
    make_config: Any, kit: Any
) -> None:
    kit.flaky_failures = 10  # the judge keeps failing: no score
    config = make_config(
        '[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ["regex", "flaky"]\n'
        'regex = "^[A-Z0-9 ]+$"\nmax_retries = 0\n'
    )
    tracer = OperationRecorder()
    config.plugin_manager.register(tracer, "tracer")
    pipeline = Pipeline([Step.from_callable(answer, name="answer")], name="shout")
    async with Flujo(pipeline, config=config) as runner:
        result = await runner.run_async(SECRET)
        await runner.services[SERVICE].flush()
    assert result.status is RunStatus.SUCCEEDED
    by_evaluator = {op.attributes["flujo.eval.evaluator"]: op for op in tracer.seen}
    assert set(by_evaluator) == {"regex", "flaky"}
    regex = by_evaluator["regex"]
    assert regex.kind == "eval.evaluate"
    assert regex.runs == (result.run_id,)  # done apart from the run: linked to it
    assert regex.attributes["flujo.eval.status"] == "scored"
    assert regex.attributes["flujo.eval.score"] == 1.0
    assert regex.attributes["flujo.eval.step"] == "$output"  # the run's final output
    assert regex.error is None
    broken = by_evaluator["flaky"]
    assert broken.attributes["flujo.eval.status"] == "judge_error"
    assert "flujo.eval.score" not in broken.attributes
    assert broken.error == "judge_error"
    assert "7781" not in tracer.carried()
