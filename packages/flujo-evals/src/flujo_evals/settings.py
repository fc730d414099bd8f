"""``[eval]`` in ``flujo.toml``: the validated settings of flujo-evals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flujo.domain.errors import ConfigError

SECTION = "eval"
"""The ``flujo.toml`` section this plugin owns."""

DEFAULT_RUBRIC = (
    "Judge whether the output answers the input correctly, completely and helpfully. "
    "Score 1.0 for an excellent answer, 0.0 for a wrong, harmful or missing one. "
    "A run that failed (it has an error and no output) is judged on whether the failure "
    "was handled gracefully."
)
"""The rubric used when ``rubric`` is not set."""

_FUNCTION_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class EvalSettings(BaseModel):
    """``[eval]``: which finished runs are evaluated, by what, and at what cost.

    ``rubric`` and ``json_schema`` take inline text or ``"@path"`` (a file, relative to the
    folder of ``flujo.toml``); a file that does not exist is a config error when a runner
    starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """Evaluate finished runs. Off by default: installing the plugin never spends money."""
    sampling_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """Fraction of (successful) runs each evaluator judges; rows get ``sample_weight = 1/rate``."""
    evaluate_on_failure: bool = True
    """Evaluate every run that did not succeed, whatever the sampling (``sample_weight = 1``)."""
    evaluators: list[str] = Field(default_factory=lambda: ["judge"])
    """Registered evaluators to run: ``judge``, ``json_schema``, ``regex``, ``python``, or a
    third-party one."""
    judge_model: str = "openai:gpt-4o-mini"
    """The judge's model, as ``make_agent_async`` takes it (``provider:model``)."""
    rubric: str = DEFAULT_RUBRIC
    """What the judge scores against: inline text, or ``"@rubrics/quality.md"``."""
    steps: list[str] = Field(default_factory=list)
    """Steps whose outputs are judged; empty means the run's final output."""
    max_evals_per_hour: int | None = Field(default=None, ge=0)
    """Paid evaluations (the judge) started per rolling hour; over it, ``skipped_budget``."""
    max_judge_cost_usd_per_day: float | None = Field(default=None, ge=0.0)
    """Judge spend per UTC day; once reached, ``skipped_budget`` rows until midnight."""
    timeout_s: float = Field(default=60.0, gt=0.0)
    """Limit on one evaluator call; past it the attempt is a ``timeout``."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts after a retryable failure (connection error, timeout, 5xx, rate limit)."""
    retry_backoff_s: float = Field(default=0.5, ge=0.0)
    """First wait between attempts; doubles each time."""
    salt: str = ""
    """Mixed into the sampling hash; change it to draw a different (still deterministic) sample."""
    concurrency: int = Field(default=4, ge=1)
    """Evaluations running at once per runner (within ``[run] background_concurrency``)."""
    circuit_breaker_threshold: int = Field(default=5, ge=1)
    """Consecutive unreachable/auth/quota failures of one evaluator that open its breaker."""
    circuit_breaker_cooldown_s: float = Field(default=60.0, ge=0.0)
    """How long an open breaker skips calls (``skipped_circuit`` rows) before one trial call."""
    judge_input_usd_per_mtok: float | None = Field(default=None, ge=0.0)
    """Price of the judge's input tokens, USD per million; default: pydantic-ai's price list."""
    judge_output_usd_per_mtok: float | None = Field(default=None, ge=0.0)
    """Price of the judge's output tokens, USD per million; default: pydantic-ai's price list."""
    regex: str | None = None
    """The pattern the ``regex`` evaluator searches the output for (``re.search``)."""
    json_schema: dict[str, Any] | str | None = None
    """The JSON Schema the ``json_schema`` evaluator validates outputs against (a table,
    JSON text, or ``"@schemas/answer.json"``)."""
    python: str | None = None
    """The ``module:function`` the ``python`` evaluator calls with the run."""

    @field_validator("evaluators")
    @classmethod
    def _unique_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one evaluator")
        if any(not isinstance(n, str) or not n.strip() for n in value):
            raise ValueError("evaluator names must be non-empty strings")
        if len(set(value)) != len(value):
            raise ValueError("an evaluator is listed twice")
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("python")
    @classmethod
    def _function_ref(cls, value: str | None) -> str | None:
        if value is not None and not _FUNCTION_REF.match(value):
            raise ValueError("expected 'module:function', e.g. 'my_checks:polite'")
        return value

    @field_validator("judge_model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if ":" not in value and value != "test":
            raise ValueError("expected 'provider:model', e.g. 'openai:gpt-4o-mini'")
        return value


def resolve_text(value: str, root: Path, key: str) -> str:
    """``value`` itself, or the content of the file ``@path`` names (relative to ``root``).

    :raises ConfigError: the file does not exist or cannot be read.
    """
    if not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise ConfigError(f"[{SECTION}] {key}: file {str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"[{SECTION}] {key}: cannot read {str(path)!r}: {exc.strerror}") from None
