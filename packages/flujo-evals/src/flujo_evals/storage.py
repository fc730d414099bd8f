"""The ``evaluations`` table: migrations and the statements flujo-evals runs on it.

Every statement uses named ``:param`` placeholders and SQL that SQLite and PostgreSQL share;
only the column types differ between the two dialects' migrations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import Migration

if TYPE_CHECKING:
    from flujo.domain.interfaces import StateBackend
    from flujo.plugin import RunViewSection

OWNER = "flujo-evals"
"""The owner of this plugin's migrations (its distribution name)."""

FINAL_OUTPUT = "$output"
"""The ``step`` of an evaluation of the run's final output (``[eval] steps`` empty)."""

SCORED = "scored"
JUDGE_ERROR = "judge_error"
TIMEOUT = "timeout"
PARSE_ERROR = "parse_error"
SKIPPED_BUDGET = "skipped_budget"
SKIPPED_CIRCUIT = "skipped_circuit"
NOT_DONE = "not_done"
STATUSES = (SCORED, JUDGE_ERROR, TIMEOUT, PARSE_ERROR, SKIPPED_BUDGET, SKIPPED_CIRCUIT, NOT_DONE)
"""Every row status. Only ``scored`` rows have a score."""
CALLED = (SCORED, JUDGE_ERROR, TIMEOUT, PARSE_ERROR)
"""Statuses of rows whose evaluator was called (they count towards the hourly budget)."""
FINAL = (SCORED, PARSE_ERROR)
"""Statuses never replaced: re-evaluating the same key is a no-op. Other rows (errors,
skips, not done) are replaced by a later attempt (a backfill, a resumed run)."""
FAILURES = (JUDGE_ERROR, TIMEOUT, PARSE_ERROR)
SKIPPED = (SKIPPED_BUDGET, SKIPPED_CIRCUIT, NOT_DONE)

COLUMNS = (
    "id",
    "run_id",
    "step",
    "evaluator",
    "rubric_hash",
    "judge_model",
    "status",
    "score",
    "label",
    "reasoning",
    "sample_weight",
    "tokens",
    "cost_usd",
    "latency_ms",
    "attempts",
    "billable",
    "created_at",
)


def migrations(dialect: str) -> list[Migration]:
    """The ``evaluations`` table for ``dialect`` (``"sqlite"`` or ``"postgresql"``)."""
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    integer = "BIGINT" if dialect == "postgresql" else "INTEGER"
    return [
        Migration(
            OWNER,
            1,
            (
                f"""CREATE TABLE evaluations (
                    id TEXT PRIMARY KEY,
                    run_id TEXT NOT NULL REFERENCES workflow_state (run_id) ON DELETE CASCADE,
                    step TEXT NOT NULL,
                    evaluator TEXT NOT NULL,
                    rubric_hash TEXT NOT NULL,
                    judge_model TEXT,
                    status TEXT NOT NULL,
                    score {real},
                    label TEXT,
                    reasoning TEXT,
                    sample_weight {real} NOT NULL,
                    tokens {integer} NOT NULL DEFAULT 0,
                    cost_usd {real} NOT NULL DEFAULT 0,
                    latency_ms {real} NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    billable INTEGER NOT NULL DEFAULT 0,
                    created_at {real} NOT NULL,
                    CONSTRAINT evaluations_key UNIQUE (run_id, step, evaluator, rubric_hash)
                )""",
                "CREATE INDEX evaluations_run ON evaluations (run_id)",
                "CREATE INDEX evaluations_created ON evaluations (created_at)",
                "CREATE INDEX evaluations_evaluator ON evaluations (evaluator, created_at)",
            ),
        )
    ]


def _in(values: tuple[str, ...], prefix: str) -> tuple[str, dict[str, str]]:
    """``(:p0, :p1, ...)`` and its params, for an ``IN`` list with named placeholders."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{k}" for k in params) + ")", params


_FINAL_IN, _FINAL_PARAMS = _in(FINAL, "final")
_CALLED_IN, _CALLED_PARAMS = _in(CALLED, "called")

UPSERT = (
    f"INSERT INTO evaluations ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in COLUMNS)}) "
    "ON CONFLICT (run_id, step, evaluator, rubric_hash) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in ("id", "run_id"))
    + f" WHERE evaluations.status NOT IN {_FINAL_IN}"
)


async def write_row(state: StateBackend, row: Mapping[str, Any]) -> int:
    """Insert ``row``, or replace a non-final row with the same key; 0 when a final row won."""
    return await state.execute(UPSERT, {**row, **_FINAL_PARAMS})


async def has_final_row(
    state: StateBackend, run_id: str, step: str, evaluator: str, rubric_hash: str
) -> bool:
    """Whether this (run, step, evaluator, rubric) already has a final evaluation."""
    rows = await state.fetch_all(
        "SELECT 1 AS found FROM evaluations WHERE run_id = :run_id AND step = :step "
        f"AND evaluator = :evaluator AND rubric_hash = :rubric_hash AND status IN {_FINAL_IN}",
        {
            "run_id": run_id,
            "step": step,
            "evaluator": evaluator,
            "rubric_hash": rubric_hash,
            **_FINAL_PARAMS,
        },
    )
    return bool(rows)


async def final_keys(state: StateBackend, since: float) -> set[tuple[str, str, str, str]]:
    """Keys ``(run_id, step, evaluator, rubric_hash)`` of final rows of runs since ``since``."""
    rows = await state.fetch_all(
        "SELECT e.run_id, e.step, e.evaluator, e.rubric_hash FROM evaluations e "
        "JOIN workflow_state w ON w.run_id = e.run_id "
        f"WHERE w.created_at >= :since AND e.status IN {_FINAL_IN}",
        {"since": since, **_FINAL_PARAMS},
    )
    return {(r["run_id"], r["step"], r["evaluator"], r["rubric_hash"]) for r in rows}


async def billable_calls_since(state: StateBackend, since: float) -> int:
    """Paid evaluator calls recorded since ``since`` (for ``max_evals_per_hour``)."""
    rows = await state.fetch_all(
        "SELECT COUNT(*) AS n FROM evaluations WHERE billable = 1 AND created_at >= :since "
        f"AND status IN {_CALLED_IN}",
        {"since": since, **_CALLED_PARAMS},
    )
    return int(rows[0]["n"] or 0) if rows else 0


async def billable_cost_since(state: StateBackend, since: float) -> float:
    """USD spent by paid evaluators since ``since`` (for ``max_judge_cost_usd_per_day``)."""
    rows = await state.fetch_all(
        "SELECT SUM(cost_usd) AS usd FROM evaluations WHERE billable = 1 AND created_at >= :since",
        {"since": since},
    )
    return float(rows[0]["usd"] or 0.0) if rows else 0.0


async def average_billable_cost(state: StateBackend) -> float:
    """Mean cost of a scored paid evaluation so far (0 when there is none)."""
    rows = await state.fetch_all(
        "SELECT AVG(cost_usd) AS usd FROM evaluations WHERE billable = 1 AND status = :s",
        {"s": SCORED},
    )
    return float(rows[0]["usd"] or 0.0) if rows else 0.0


async def select_rows(
    state: StateBackend,
    *,
    run_id: str | None = None,
    evaluator: str | None = None,
    since: float | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Evaluations, newest first, with the run's pipeline name, filtered as given."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if run_id is not None:
        where.append("e.run_id = :run_id")
        params["run_id"] = run_id
    if evaluator is not None:
        where.append("e.evaluator = :evaluator")
        params["evaluator"] = evaluator
    if since is not None:
        where.append("e.created_at >= :since")
        params["since"] = since
    sql = (
        f"SELECT {', '.join('e.' + c for c in COLUMNS)}, w.pipeline_name AS pipeline "
        "FROM evaluations e JOIN workflow_state w ON w.run_id = e.run_id"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY e.created_at DESC, e.id"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return await state.fetch_all(sql, params)


async def rows_with_id_prefix(state: StateBackend, prefix: str) -> list[dict[str, Any]]:
    """Evaluations whose id starts with ``prefix`` (at most two: enough to tell ambiguity)."""
    return await state.fetch_all(
        f"SELECT {', '.join('e.' + c for c in COLUMNS)}, w.pipeline_name AS pipeline "
        "FROM evaluations e JOIN workflow_state w ON w.run_id = e.run_id "
        "WHERE e.id LIKE :pattern ORDER BY e.id LIMIT 2",
        {"pattern": prefix + "%"},
    )


async def finished_runs_since(state: StateBackend, since: float) -> list[dict[str, Any]]:
    """``run_id``/``status``/``created_at`` of finished runs since ``since``, oldest first."""
    return await state.fetch_all(
        "SELECT run_id, status, created_at FROM workflow_state "
        "WHERE created_at >= :since AND status NOT IN (:running, :interrupted) "
        "ORDER BY created_at, run_id",
        {"since": since, "running": "running", "interrupted": "interrupted"},
    )


async def run_view(state: StateBackend, run_id: str) -> RunViewSection | None:
    """This run's evaluations, for ``flujo runs show`` (``None``: a database made before
    flujo-evals was installed; ``[eval]`` may still be off, then the section says so)."""
    from flujo.plugin import RunViewSection, migrated

    if not await migrated(state, migrations(state.dialect)):
        return None
    rows = list(reversed(await select_rows(state, run_id=run_id)))  # oldest first
    scores = [float(r["score"]) for r in rows if r["status"] == SCORED and r["score"] is not None]
    fields: dict[str, str | int | float | None] = {"evaluations": len(rows)}
    if scores:
        fields["mean score"] = round(sum(scores) / len(scores), 4)
    cost = sum(float(r["cost_usd"] or 0.0) for r in rows)
    if cost:
        fields["judge cost usd"] = round(cost, 6)
    return RunViewSection(
        "Evaluations",
        fields=fields,
        columns=("step", "evaluator", "status", "score", "label", "latency ms", "reasoning"),
        rows=[
            (
                r["step"],
                r["evaluator"],
                r["status"],
                r["score"],
                r["label"],
                round(float(r["latency_ms"] or 0.0), 1),
                r["reasoning"],
            )
            for r in rows
        ],
        payload=[{k: r[k] for k in COLUMNS if k not in ("run_id", "rubric_hash")} for r in rows],
        empty="no evaluations (none sampled, or [eval] is off)",
    )
