"""``flujo evals list|show|summary|backfill``: imported only when ``flujo evals`` runs.

User errors (a bad ``--since``, an unknown id) raise :class:`~flujo.domain.errors.UserError`
subclasses, which ``flujo`` prints as one line with exit code 2. ``summary --fail-below X``
exits 1 when a group's weighted mean score is under ``X``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flujo_evals import storage
from flujo_evals.errors import EvalsUsageError, EvaluationNotFoundError
from flujo_evals.summary import GROUP_BY, GroupBy, summarize

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import StateBackend

T = TypeVar("T")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, *, now: float | None = None) -> float:
    """``--since``: an ISO date/datetime (UTC unless it has an offset), or ``7d``/``12h``/``30m``.

    :raises EvalsUsageError: the value is neither.
    """
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNIT_S[match[2]]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise EvalsUsageError(
            f"--since {value!r}: expected a date (2025-01-31), a datetime "
            "(2025-01-31T12:00) or a duration (7d, 12h, 30m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _config() -> FlujoConfig:
    from flujo.cli import current_config

    return current_config()


def _with_state(fn: Callable[[StateBackend], Awaitable[T]]) -> T:
    """``fn(state)`` on the existing state database, migrated (backfill writes evaluations)."""
    from flujo.state import open_state

    async def go() -> T:
        state = await open_state(_config(), create=False)
        try:
            return await fn(state)
        finally:
            await state.close()

    return asyncio.run(go())


def _read_rows(
    fn: Callable[[StateBackend], Awaitable[list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """``fn(state)`` on the state database opened read-only: nothing is created or migrated.

    No database is "no state database at ..." (exit 2); a database made before flujo-evals
    was installed has no evaluations table, which means no evaluations.
    """
    from flujo.state import migrated, open_state

    async def go() -> list[dict[str, Any]]:
        state = await open_state(_config(), read_only=True)
        try:
            if not await migrated(state, storage.migrations(state.dialect)):
                return []
            return await fn(state)
        finally:
            await state.close()

    return asyncio.run(go())


def _echo_json(value: Any) -> None:
    from pydantic_core import to_json

    click.echo(to_json(value, indent=2, serialize_unknown=True).decode())


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as ``--json`` prints it: ``created_at`` in UTC ISO-8601 with ``Z``, to the
    microsecond, as every flujo command writes timestamps in JSON."""
    from flujo.plugin import json_time

    out = dict(row)
    out["billable"] = bool(out.get("billable"))
    out["created_at"] = json_time(float(out["created_at"]))
    return out


def _score(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


@click.group("evals")
def evals() -> None:
    """Evaluations of finished runs (flujo-evals): list, show, summary, backfill."""


@evals.command("list")
@click.option("--run", "run_id", default=None, help="Only evaluations of this run.")
@click.option("--evaluator", default=None, help="Only this evaluator's evaluations.")
@click.option("--since", default=None, help="Since a date, datetime or duration (7d, 12h).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(
    run_id: str | None, evaluator: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """List evaluations, newest first."""
    from flujo.plugin import resolve_run_id

    since_ts = parse_since(since) if since is not None else None

    async def select(state: StateBackend) -> list[dict[str, Any]]:
        # A run id prefix, as any listing prints it; an unknown one is an error, not "none".
        full_id = await resolve_run_id(state, run_id) if run_id else None
        return await storage.select_rows(
            state, run_id=full_id, evaluator=evaluator, since=since_ts, limit=limit
        )

    rows = _read_rows(select)
    if as_json:
        _echo_json([_public(r) for r in rows])
        return
    if not rows:
        click.echo("no evaluations")
        return
    from flujo.plugin import echo_table, human_time

    echo_table(
        ("ID", "CREATED", "RUN", "EVALUATOR", "STEP", "STATUS", "SCORE", "LABEL"),
        (
            (
                r["id"],
                human_time(float(r["created_at"])),
                r["run_id"],
                r["evaluator"],
                r["step"],
                r["status"],
                _score(r["score"]),
                r["label"],
            )
            for r in rows
        ),
        right=(6,),
    )


@evals.command("show")
@click.argument("evaluation_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(evaluation_id: str, as_json: bool) -> None:
    """Show one evaluation (EVALUATION_ID or a unique prefix of it)."""
    if not re.fullmatch(r"[0-9a-f]{1,32}", evaluation_id):
        raise EvaluationNotFoundError(f"no evaluation with id {evaluation_id!r}")
    rows = _read_rows(lambda s: storage.rows_with_id_prefix(s, evaluation_id))
    if not rows:
        raise EvaluationNotFoundError(f"no evaluation with id {evaluation_id!r}")
    if len(rows) > 1:
        raise EvalsUsageError(f"id prefix {evaluation_id!r} is ambiguous; give more characters")
    if as_json:
        _echo_json(_public(rows[0]))
        return
    for key, value in _for_people(rows[0]):
        click.echo(f"{key:<14} {value}")


def _for_people(row: dict[str, Any]) -> list[tuple[str, str]]:
    """``evals show``'s fields for people: numbers rounded to what matters (JSON keeps them
    exact), the time in UTC to the second, text on one line, ``-`` for none."""
    from flujo.plugin import human_time, printable

    def number(value: Any, spec: str) -> str:
        return "-" if value is None else format(float(value), spec)

    shown = {
        "score": number(row["score"], ".3f"),
        "sample_weight": number(row["sample_weight"], ".6g"),
        "cost_usd": number(row["cost_usd"], ".6f"),
        "latency_ms": number(row["latency_ms"], ".0f"),
        "created_at": human_time(float(row["created_at"])),
    }
    keys = (
        "id", "run_id", "pipeline", "step", "evaluator", "status", "score", "label",
        "reasoning", "sample_weight", "judge_model", "rubric_hash", "tokens", "cost_usd",
        "latency_ms", "attempts", "created_at",
    )  # fmt: skip
    return [(key, shown[key] if key in shown else printable(row.get(key))) for key in keys]


@evals.command("summary")
@click.option(
    "--group-by",
    "group_by",
    type=click.Choice(GROUP_BY),
    default="evaluator",
    show_default=True,
)
@click.option("--since", default=None, help="Since a date, datetime or duration (7d, 12h).")
@click.option(
    "--fail-below",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Exit 1 when a group's weighted mean score is under this (a CI gate).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def summary_command(
    group_by: GroupBy, since: str | None, fail_below: float | None, as_json: bool
) -> None:
    """Weighted mean score, count, coverage and failures per group."""
    since_ts = parse_since(since) if since is not None else None
    rows = _read_rows(lambda s: storage.select_rows(s, since=since_ts))
    groups = summarize(rows, group_by)
    failing = [
        g for g in groups if fail_below is not None and g.mean is not None and g.mean < fail_below
    ]
    if as_json:
        _echo_json([{**g.to_dict(), "failing": g in failing} for g in groups])
    elif not groups:
        click.echo("no evaluations")
    else:
        click.echo(
            f"{group_by.upper():<20} {'MEAN':>6} {'COUNT':>6} {'COVERAGE':>9} "
            f"{'FAILURES':>9} {'SKIPPED':>8} {'COST_USD':>10}"
        )
        for g in groups:
            coverage = "-" if g.coverage is None else f"{g.coverage:.0%}"
            mark = "  FAIL" if g in failing else ""
            click.echo(
                f"{g.group:<20} {_score(g.mean):>6} {g.scored:>6} {coverage:>9} "
                f"{g.failures:>9} {g.skipped:>8} {g.cost_usd:>10.4f}{mark}"
            )
    if fail_below is not None and not any(g.mean is not None for g in groups):
        click.echo("warning: no scored evaluations to gate on", err=True)
    if failing:
        names = ", ".join(f"{g.group} ({_score(g.mean)})" for g in failing)
        click.echo(f"fail: mean score below {fail_below:g} for {names}", err=True)
        # sys.exit, not click's Exit: `flujo` runs click with standalone_mode=False, which
        # turns Exit(1) into a return value that the entry point does not pass on.
        sys.exit(1)


@evals.command("backfill")
@click.option("--since", required=True, help="Runs since a date, datetime or duration (7d).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N runs.")
@click.option(
    "--budget-usd",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Stop once the backfill has spent this much on paid evaluators.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be evaluated; evaluate nothing.")
def backfill_command(
    since: str, limit: int | None, budget_usd: float | None, dry_run: bool
) -> None:
    """Evaluate stored runs that have no evaluation yet (idempotent).

    Uses the [eval] evaluators, sampling and budgets, so a run gets the evaluations it would
    have had live. The [eval] `enabled` switch does not apply: a backfill is explicit.
    """
    from flujo_evals import backfill
    from flujo_evals.engine import build_engine

    since_ts = parse_since(since)
    config = _config()

    async def go(state: StateBackend) -> backfill.BackfillReport:
        engine = build_engine(config, state)
        planned = await backfill.plan(engine, since_ts, limit)
        if dry_run:
            return await backfill.estimate(engine, planned)
        total = sum(len(p.todo) for p in planned)
        with click.progressbar(
            length=total, label="evaluating", file=sys.stderr, show_pos=True
        ) as bar:
            return await backfill.run(engine, planned, budget_usd=budget_usd, progress=bar.update)

    report = _with_state(go)
    if dry_run:
        click.echo(
            f"dry run: {report.runs} runs, {report.evaluations} evaluations "
            f"({report.billable} paid), estimated cost ${report.estimated_cost_usd:.4f}"
        )
        return
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items())) or "nothing to do"
    click.echo(
        f"backfilled {report.runs} runs: {statuses}; spent ${report.cost_usd:.4f}"
        + ("; stopped: --budget-usd reached" if report.stopped_for_budget else "")
    )
