"""Step spans: a step wrapper (``flujo_wrap_step``) that times each step, and the run-view
section (``flujo_run_view``) that shows them in ``flujo runs show``.

A tracing plugin would open a span of its tracer here; this one records the step's duration
in its own table. The wrapper never waits for I/O on the run's hot path: the row is written by
a background task (``runtime.tasks.schedule``), drained when the runner closes.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flujo.plugin import Migration

if TYPE_CHECKING:
    from flujo.plugin import RunRecord, Runtime, RunViewSection, StateBackend, StepStarted

OWNER = "flujo-plugin-example"
TABLE = "example_step_spans"

CURRENT_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flujo_plugin_example_step", default=None
)
"""The step whose span is open: current for the step's agent and every tool it calls."""


def migrations(dialect: str) -> list[Migration]:
    """The spans table, for ``sqlite`` or ``postgresql``."""
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    return [
        Migration(
            OWNER,
            1,
            (
                f"CREATE TABLE {TABLE} (run_id TEXT NOT NULL, step_index INTEGER NOT NULL, "
                f"step TEXT NOT NULL, started_at {real} NOT NULL, duration_ms {real} NOT NULL)",
                f"CREATE INDEX {TABLE}_run ON {TABLE} (run_id)",
            ),
        )
    ]


@contextlib.contextmanager
def step_span(event: StepStarted, runtime: Runtime) -> Iterator[None]:
    """Open the span of one step; on exit, schedule its row."""
    token = CURRENT_STEP.set(event.step_name)
    started, clock = time.time(), time.perf_counter()
    try:
        yield
    finally:
        CURRENT_STEP.reset(token)
        params = {
            "run_id": event.run_id,
            "step_index": event.index,
            "step": event.step_name,
            "started_at": started,
            "duration_ms": (time.perf_counter() - clock) * 1000.0,
        }
        state = runtime.state

        async def insert() -> None:
            await state.execute(
                f"INSERT INTO {TABLE} (run_id, step_index, step, started_at, duration_ms) "
                "VALUES (:run_id, :step_index, :step, :started_at, :duration_ms)",
                params,
            )

        runtime.tasks.schedule("flujo-plugin-example.span", insert)


async def run_view(run: RunRecord, state: StateBackend) -> RunViewSection | None:
    """The run's step spans; ``None`` when this database never had the spans table."""
    from flujo.plugin import RunViewSection, migrated

    if not await migrated(state, migrations(state.dialect)):
        return None
    rows = await state.fetch_all(
        f"SELECT step_index, step, duration_ms FROM {TABLE} WHERE run_id = :run_id "
        "ORDER BY started_at, step_index",
        {"run_id": run.run_id},
    )
    if not rows:
        return None  # spans were off for this run: nothing to show
    return RunViewSection(
        "Step spans",
        fields={"spans": len(rows), "total ms": round(sum(r["duration_ms"] for r in rows), 1)},
        columns=("#", "step", "ms"),
        rows=[(r["step_index"], r["step"], round(r["duration_ms"], 1)) for r in rows],
        payload=rows,
    )
