"""The ``example_clean_output`` evaluator: does a run's output avoid the denied words?"""

from __future__ import annotations

from flujo.plugin import EvaluationResult, RunRecord, RunStatus

from flujo_plugin_example.policy import DenyWords


class CleanOutput:
    """Scores 1.0 when a succeeded run's output has none of ``[example] words``, else 0.0.

    The ``deny_words`` policy stops denied words going *into* steps; this checks what came
    *out*, after the fact, on the runs flujo-evals samples. A run that did not succeed has no
    output to judge and scores 0.0 (label ``"no_output"``), as a result, not an exception.
    """

    name = "example_clean_output"
    deterministic = True

    def __init__(self, policy: DenyWords) -> None:
        self._policy = policy

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        if run.status is not RunStatus.SUCCEEDED:
            return EvaluationResult(
                score=0.0, label="no_output", reasoning=f"the run {run.status.value}"
            )
        word = self._policy.find(run.output)
        if word is not None:
            return EvaluationResult(
                score=0.0, label="fail", reasoning=f"the output contains {word.lower()!r}"
            )
        return EvaluationResult(score=1.0, label="pass", reasoning="no denied word in the output")
