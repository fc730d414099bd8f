"""The filters of ``list_runs``/``count_runs`` as one SQL text, shared by every backend.

Statements use named ``:param`` placeholders (SQLite takes them as they are, PostgreSQL after
``translate_params``), so both dialects run the same filters. Every filter is answerable from
an index: ``status`` and ``created_at`` from ``workflow_state_status``/``_created``, a
pipeline from ``workflow_state_pipeline``/``_pipeline_status``, an id
prefix as a range of the primary key (never ``LIKE``, which SQLite's case-insensitive default
and PostgreSQL's non-C collations cannot answer from an index).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flujo.domain.models import RunStatus

# Run ids are uuid4().hex (see flujo.state.run_ids): a prefix is lower-case hex.
_HEX = re.compile(r"[0-9a-f]{1,32}")


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a listing or a count covers (every field optional, all must hold)."""

    status: RunStatus | None = None
    pipeline: str | None = None
    created_after: float | None = None
    """Only runs created at or after this time (seconds since the epoch)."""
    created_before: float | None = None
    """Only runs created before this time."""
    id_prefix: str | None = None
    """Only runs whose id starts with this (lower-case hex; anything else matches none;
    ``""`` every run)."""

    def where(self) -> tuple[list[str], dict[str, Any]]:
        """SQL conditions (``AND``-ed by the caller) and their parameters."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.status is not None:
            clauses.append("status = :status")
            params["status"] = self.status.value
        if self.pipeline is not None:
            clauses.append("pipeline_name = :pipeline")
            params["pipeline"] = self.pipeline
        if self.created_after is not None:
            clauses.append("created_at >= :created_after")
            params["created_after"] = float(self.created_after)
        if self.created_before is not None:
            clauses.append("created_at < :created_before")
            params["created_before"] = float(self.created_before)
        if self.id_prefix:  # "" is every id, as no prefix
            # Anything but hex is refused, not ranged: a collation that ignores punctuation
            # (PostgreSQL's en_US) would read "0a-" as "0a" and its range as every "0a" id.
            if not _HEX.fullmatch(self.id_prefix):
                clauses.append("1 = 0")  # no run id has such a prefix
            else:
                # Every id with this prefix sorts in [prefix, prefix + "g"): "g" follows every
                # hex digit, in byte order and in PostgreSQL's collations alike.
                clauses.append("run_id >= :id_low AND run_id < :id_high")
                params["id_low"] = self.id_prefix
                params["id_high"] = self.id_prefix + "g"
        return clauses, params


def list_sql(
    columns: str, where: RunFilter, after: tuple[float, str] | None, limit: int
) -> tuple[str, dict[str, Any]]:
    """``SELECT columns`` of the runs ``where`` covers, newest first (ties by id), from the
    position ``after`` (the ``(created_at, run_id)`` of the previous page's last run)."""
    clauses, params = where.where()
    if after is not None:
        clauses.append(
            "(created_at < :after_at OR (created_at = :after_at AND run_id > :after_id))"
        )
        params["after_at"], params["after_id"] = float(after[0]), after[1]
    params["limit"] = int(limit)
    sql = f"SELECT {columns} FROM workflow_state{_joined(clauses)} "
    sql += "ORDER BY created_at DESC, run_id LIMIT :limit"
    return sql, params


def count_sql(where: RunFilter, by_pipeline: bool) -> tuple[str, dict[str, Any]]:
    """Count the runs ``where`` covers by status (and pipeline, when ``by_pipeline``)."""
    clauses, params = where.where()
    keys = "pipeline_name, status" if by_pipeline else "status"
    sql = f"SELECT {keys}, COUNT(*) AS n FROM workflow_state{_joined(clauses)} GROUP BY {keys}"
    return sql, params


def counted(
    rows: list[dict[str, Any]], by_pipeline: bool
) -> dict[tuple[str | None, RunStatus], int]:
    """``count_sql``'s rows as ``{(pipeline or None, status): count}``."""
    return {
        (str(r["pipeline_name"]) if by_pipeline else None, RunStatus(r["status"])): int(r["n"])
        for r in rows
    }


def _joined(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""
