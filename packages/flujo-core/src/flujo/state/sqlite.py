"""The default state backend: one SQLite file in WAL mode.

Statements run inline on the event loop: a WAL commit with ``synchronous=NORMAL`` takes tens
of microseconds, far less than handing it to a thread would cost. ``NORMAL`` keeps every
committed step through a killed process; ``[state] synchronous = "full"`` also survives a
power cut, at the price of an fsync per step.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from flujo.domain.errors import StateError
from flujo.domain.interfaces import Migration
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage
from flujo.state.migrations import core_migrations


def _dumps(value: Any) -> str:
    return to_json(value, serialize_unknown=True).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SQLiteBackend:
    """:class:`~flujo.domain.interfaces.StateBackend` on one SQLite file (or ``:memory:``)."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, *, synchronous: str = "normal") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (raises :class:`StateError` before :meth:`open`)."""
        if self._conn is None:
            raise StateError("the SQLite state backend is not open")
        return self._conn

    async def open(self, migrations: Sequence[Migration] = ()) -> None:
        if self._conn is not None:
            return
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        self._conn = conn
        self._migrate([*core_migrations(self.dialect), *migrations])

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        conn = self.conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS flujo_migrations (owner TEXT NOT NULL, "
            "version INTEGER NOT NULL, applied_at REAL NOT NULL, PRIMARY KEY (owner, version))"
        )
        for mig in sorted(migrations, key=lambda m: (m.owner != "flujo", m.owner, m.version)):
            # BEGIN IMMEDIATE serializes processes that start at once; re-check inside it.
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = conn.execute(
                    "SELECT 1 FROM flujo_migrations WHERE owner = ? AND version = ?",
                    (mig.owner, mig.version),
                ).fetchone()
                if done is None:
                    for statement in mig.statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO flujo_migrations VALUES (?, ?, ?)",
                        (mig.owner, mig.version, time.time()),
                    )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StateError(
                    f"migration {mig.owner} v{mig.version} failed on {self.path}: {exc}"
                ) from exc

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def create_run(self, run: RunRecord) -> None:
        self.conn.execute(
            "INSERT INTO workflow_state (run_id, pipeline_name, pipeline_version, pipeline_ref, "
            "status, current_step, input, context, usage, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.pipeline_name,
                run.pipeline_version,
                run.pipeline_ref,
                run.status.value,
                run.current_step,
                _dumps(run.input),
                _dumps(run.context),
                _dumps(run.usage.to_dict()),
                run.created_at,
                run.updated_at,
            ),
        )

    async def save_step(
        self, run_id: str, index: int, step: StepResult, *, context_json: str, usage: Usage
    ) -> None:
        now = time.time()
        output = _dumps(step.output)
        usage_json = _dumps(usage.to_dict())
        conn = self.conn
        conn.execute("BEGIN")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO step_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    index,
                    step.name,
                    step.status.value,
                    output,
                    step.error,
                    step.attempts,
                    step.latency_ms,
                    _dumps(step.usage.to_dict()),
                    now,
                ),
            )
            if step.status is StepStatus.SUCCEEDED:
                conn.execute(
                    "UPDATE workflow_state SET current_step = ?, context = ?, last_output = ?, "
                    "usage = ?, updated_at = ? WHERE run_id = ?",
                    (index + 1, context_json, output, usage_json, now, run_id),
                )
            else:
                conn.execute(
                    "UPDATE workflow_state SET context = ?, usage = ?, updated_at = ? "
                    "WHERE run_id = ?",
                    (context_json, usage_json, now, run_id),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StateError(f"cannot save step {step.name!r} of run {run_id}: {exc}") from exc

    async def finalize_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: Any,
        error: str | None,
        context_json: str,
        usage: Usage,
    ) -> None:
        self.conn.execute(
            "UPDATE workflow_state SET status = ?, output = ?, error = ?, context = ?, "
            "usage = ?, updated_at = ? WHERE run_id = ?",
            (
                status.value,
                _dumps(output),
                error,
                context_json,
                _dumps(usage.to_dict()),
                time.time(),
                run_id,
            ),
        )

    async def mark_running(self, run_id: str) -> None:
        self.conn.execute(
            "UPDATE workflow_state SET status = ?, output = NULL, error = NULL, updated_at = ? "
            "WHERE run_id = ?",
            (RunStatus.RUNNING.value, time.time(), run_id),
        )

    _RUN_COLUMNS = (
        "run_id, pipeline_name, pipeline_version, pipeline_ref, status, current_step, input, "
        "context, output, last_output, error, usage, created_at, updated_at"
    )

    @staticmethod
    def _run_from_row(row: Sequence[Any]) -> RunRecord:
        return RunRecord(
            run_id=row[0],
            pipeline_name=row[1],
            pipeline_version=row[2],
            pipeline_ref=row[3],
            status=RunStatus(row[4]),
            current_step=row[5],
            input=_loads(row[6]),
            context=_loads(row[7]) or {},
            output=_loads(row[8]),
            last_output=_loads(row[9]),
            error=row[10],
            usage=Usage.from_dict(_loads(row[11]) or {}),
            created_at=row[12],
            updated_at=row[13],
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(
            f"SELECT {self._RUN_COLUMNS} FROM workflow_state WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        run = self._run_from_row(row)
        for s in self.conn.execute(
            "SELECT name, status, output, error, attempts, latency_ms, usage FROM step_results "
            "WHERE run_id = ? ORDER BY idx",
            (run_id,),
        ):
            run.steps.append(
                StepResult(
                    name=s[0],
                    status=StepStatus(s[1]),
                    output=_loads(s[2]),
                    error=s[3],
                    attempts=s[4],
                    latency_ms=s[5],
                    usage=Usage.from_dict(_loads(s[6]) or {}),
                )
            )
        return run

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        where, params = ("WHERE status = ?", (status.value,)) if status else ("", ())
        rows = self.conn.execute(
            f"SELECT {self._RUN_COLUMNS} FROM workflow_state {where} "
            "ORDER BY created_at DESC, run_id LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [self._run_from_row(r) for r in rows]

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        try:
            return self.conn.execute(sql, dict(params or {})).rowcount
        except sqlite3.Error as exc:
            raise StateError(f"state statement failed: {exc}") from exc

    async def fetch_all(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        try:
            cur = self.conn.execute(sql, dict(params or {}))
        except sqlite3.Error as exc:
            raise StateError(f"state query failed: {exc}") from exc
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
