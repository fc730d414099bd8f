"""Deterministic sampling: the same run gets the same decision, per evaluator.

The decision hashes ``salt``, ``run_id`` and the evaluator's name into a number in [0, 1) and
compares it with the rate, so re-running the decision (a resumed run, a backfill, another
worker) always agrees, and evaluators draw independent samples.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def sample_point(salt: str, run_id: str, evaluator: str) -> float:
    """A uniform number in [0, 1) determined by ``salt``, ``run_id`` and ``evaluator``."""
    digest = hashlib.sha256(f"{salt}\x1f{run_id}\x1f{evaluator}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def is_sampled(salt: str, run_id: str, evaluator: str, rate: float) -> bool:
    """Whether ``evaluator`` judges run ``run_id`` at sampling ``rate`` (0 never, 1 always)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return sample_point(salt, run_id, evaluator) < rate


def sample_weight(
    *, salt: str, run_id: str, evaluator: str, rate: float, failed: bool, always_on_failure: bool
) -> float | None:
    """The row's ``sample_weight`` (1 / inclusion probability), or ``None`` when not sampled.

    A failed run evaluated because of ``evaluate_on_failure`` was certain to be included, so
    its weight is 1; a sampled run stands for ``1/rate`` runs.
    """
    if failed and always_on_failure:
        return 1.0
    if is_sampled(salt, run_id, evaluator, rate):
        return 1.0 / rate
    return None
