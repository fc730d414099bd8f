"""Errors of flujo-evals.

Evaluators raise :class:`EvaluationFailed` (or a subclass) when they could not judge a run;
the engine records the failure as a row with the matching status and never as a score.
"""

from __future__ import annotations

from flujo.domain.errors import FlujoError, UserError


class EvalsError(FlujoError):
    """Base class of the errors flujo-evals raises on purpose."""


class EvaluationFailed(EvalsError):
    """An evaluator could not produce a score for a run.

    :param status: the row status to record: ``"judge_error"``, ``"parse_error"`` or
        ``"timeout"``.
    :param retryable: whether trying again may help (a connection error may; a refused API key
        or an unparsable answer will not).
    :param trips_breaker: whether the failure counts towards opening the circuit breaker
        (the judge cannot be reached, rejects the credentials, or is out of quota).
    :param cost_usd: what the failed attempt spent anyway.
    :param tokens: the tokens the failed attempt used.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str = "judge_error",
        retryable: bool = False,
        trips_breaker: bool = False,
        cost_usd: float = 0.0,
        tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.trips_breaker = trips_breaker
        self.cost_usd = cost_usd
        self.tokens = tokens


class JudgeParseError(EvaluationFailed):
    """The judge answered, but not with a valid ``{score, label, reasoning}``."""

    def __init__(self, message: str, *, cost_usd: float = 0.0, tokens: int = 0) -> None:
        super().__init__(message, status="parse_error", cost_usd=cost_usd, tokens=tokens)


class JudgeUnavailable(EvaluationFailed):
    """The judge model could not be reached, refused the request or is out of quota."""


class EvalsUsageError(UserError):
    """A bad option or argument of a ``flujo evals`` command (printed as one line, exit 2)."""


class EvaluationNotFoundError(UserError):
    """No stored evaluation has the given id."""
