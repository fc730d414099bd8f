"""Every evaluator flujo-evals registers passes the core's EvaluatorConformance suite."""

from __future__ import annotations

import pytest

from flujo.domain.interfaces import EvaluationResult, Evaluator
from flujo.domain.models import RunRecord
from flujo.testing.conformance import EvaluatorConformance
from flujo.testing.models import scripted_model
from flujo_evals.evaluators import (
    JsonSchemaEvaluator,
    JudgeEvaluator,
    PythonEvaluator,
    RegexEvaluator,
)


class TestJudgeConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        verdict = {"score": 0.9, "label": "good", "reasoning": "2 + 2 is 4"}
        return JudgeEvaluator(scripted_model(verdict, verdict), "Is the answer right?")


class TestRegexConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return RegexEvaluator(r"^\d+$")


class TestJsonSchemaConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return JsonSchemaEvaluator({"type": "integer", "minimum": 0})


def _length_check(run: RunRecord) -> EvaluationResult:
    text = str(run.output or "")
    return EvaluationResult(
        score=min(1.0, len(text) / 10), label="short" if len(text) < 5 else "ok"
    )


_length_check.deterministic = True  # type: ignore[attr-defined]


class TestPythonConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return PythonEvaluator("tests:_length_check", _length_check)
