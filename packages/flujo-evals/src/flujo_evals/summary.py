"""Aggregates of evaluation rows: weighted means, coverage and failures per group."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flujo_evals import storage

GroupBy = Literal["evaluator", "step", "pipeline", "day"]
GROUP_BY: tuple[GroupBy, ...] = ("evaluator", "step", "pipeline", "day")


@dataclass(slots=True)
class GroupSummary:
    """The aggregate of one group of evaluation rows."""

    group: str
    rows: int = 0
    """Every row: sampled evaluations, whatever their status."""
    scored: int = 0
    weight: float = 0.0
    """Sum of the scored rows' sample weights: the number of runs they stand for."""
    weighted_sum: float = 0.0
    failures: int = 0
    """Rows whose evaluator failed: ``judge_error``, ``timeout``, ``parse_error``."""
    skipped: int = 0
    """Rows not evaluated: ``skipped_budget``, ``skipped_circuit``, ``not_done``."""
    cost_usd: float = 0.0

    @property
    def mean(self) -> float | None:
        """The weighted mean score (``sum(w * score) / sum(w)`` over scored rows)."""
        return self.weighted_sum / self.weight if self.weight > 0 else None

    @property
    def coverage(self) -> float | None:
        """Scored rows over all rows: how much of the sample actually got a score."""
        return self.scored / self.rows if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``flujo evals summary --json``."""
        return {
            "group": self.group,
            "mean_score": self.mean,
            "count": self.scored,
            "rows": self.rows,
            "estimated_runs": self.weight,
            "coverage": self.coverage,
            "failures": self.failures,
            "skipped": self.skipped,
            "cost_usd": self.cost_usd,
        }


def group_key(row: Mapping[str, Any], by: GroupBy) -> str:
    """The group ``row`` falls in (``day`` is the UTC date of ``created_at``)."""
    if by == "day":
        return dt.datetime.fromtimestamp(float(row["created_at"]), dt.UTC).date().isoformat()
    return str(row[by])


def summarize(rows: Iterable[Mapping[str, Any]], by: GroupBy) -> list[GroupSummary]:
    """Aggregate ``rows`` (as :func:`storage.select_rows` returns them) per ``by``, sorted."""
    groups: dict[str, GroupSummary] = {}
    for row in rows:
        key = group_key(row, by)
        g = groups.get(key)
        if g is None:
            g = groups[key] = GroupSummary(key)
        g.rows += 1
        g.cost_usd += float(row["cost_usd"] or 0.0)
        status = row["status"]
        if status == storage.SCORED and row["score"] is not None:
            w = float(row["sample_weight"])
            g.scored += 1
            g.weight += w
            g.weighted_sum += w * float(row["score"])
        elif status in storage.FAILURES:
            g.failures += 1
        elif status in storage.SKIPPED:
            g.skipped += 1
    return [groups[k] for k in sorted(groups)]
