"""The default state backend: one SQLite file in WAL mode.

Statements run inline on the event loop: a WAL commit with ``synchronous=NORMAL`` takes tens
of microseconds, far less than handing it to a thread would cost. ``NORMAL`` keeps every
committed step through a killed process; ``[state] synchronous = "full"`` also survives a
power cut, at the price of an fsync per step. Several processes on one machine may share the
file: leases and stale-run claims are serialized by ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flujo.domain.errors import StateError
from flujo.domain.interfaces import Migration
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage
from flujo.state._rows import RUN_COLUMNS, STEP_COLUMNS, dumps, run_from_row, step_from_row
from flujo.state.migrations import core_migrations

_RUNNING = RunStatus.RUNNING.value


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
            conn.execute("PRAGMA busy_timeout=10000")
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
            with self._immediate(f"migration {mig.owner} v{mig.version}"):
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

    def _immediate(self, what: str) -> _Transaction:
        return _Transaction(self.conn, what, immediate=True)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def create_run(self, run: RunRecord, *, owner: str, lease_s: float) -> None:
        self.conn.execute(
            f"INSERT INTO workflow_state ({RUN_COLUMNS}, lease_owner, lease_expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.pipeline_name,
                run.pipeline_version,
                run.pipeline_ref,
                run.status.value,
                run.current_step,
                dumps(run.input),
                dumps(run.context),
                dumps(run.usage.to_dict()),
                run.created_at,
                run.updated_at,
                owner,
                time.time() + lease_s,
            ),
        )

    async def acquire_lease(self, run_id: str, owner: str, lease_s: float) -> bool:
        now = time.time()
        cur = self.conn.execute(
            "UPDATE workflow_state SET status = ?, output = NULL, error = NULL, "
            "lease_owner = ?, lease_expires_at = ?, updated_at = ? WHERE run_id = ? AND "
            "(status != ? OR lease_owner IS NULL OR lease_owner = ? OR lease_expires_at < ?)",
            (_RUNNING, owner, now + lease_s, now, run_id, _RUNNING, owner, now),
        )
        return cur.rowcount == 1

    async def renew_lease(self, run_id: str, owner: str, lease_s: float) -> bool:
        cur = self.conn.execute(
            "UPDATE workflow_state SET lease_expires_at = ? WHERE run_id = ? AND lease_owner = ? "
            "AND status = ?",
            (time.time() + lease_s, run_id, owner, _RUNNING),
        )
        return cur.rowcount == 1

    async def claim_stale(
        self, owner: str, lease_s: float, *, limit: int, pipeline_version: str | None = None
    ) -> list[str]:
        now = time.time()
        version_filter = "AND pipeline_version = ?" if pipeline_version else ""
        params: tuple[Any, ...] = (
            _RUNNING,
            now,
            *((pipeline_version,) if pipeline_version else ()),
        )
        with self._immediate("claiming stale runs"):
            ids = [
                row[0]
                for row in self.conn.execute(
                    "SELECT run_id FROM workflow_state WHERE status = ? AND lease_expires_at < ? "
                    f"{version_filter} ORDER BY lease_expires_at LIMIT ?",
                    (*params, limit),
                )
            ]
            self.conn.executemany(
                "UPDATE workflow_state SET lease_owner = ?, lease_expires_at = ? WHERE run_id = ?",
                [(owner, now + lease_s, run_id) for run_id in ids],
            )
        return ids

    async def save_step(
        self, run_id: str, index: int, step: StepResult, *, context_json: str, usage: Usage
    ) -> None:
        now = time.time()
        output = dumps(step.output)
        usage_json = dumps(usage.to_dict())
        conn = self.conn
        with _Transaction(conn, f"saving step {step.name!r} of run {run_id}"):
            conn.execute(
                f"INSERT OR REPLACE INTO step_results (run_id, idx, {STEP_COLUMNS}, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    index,
                    step.name,
                    step.status.value,
                    output,
                    step.error,
                    step.attempts,
                    step.latency_ms,
                    dumps(step.usage.to_dict()),
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
            "usage = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE run_id = ?",
            (
                status.value,
                dumps(output),
                error,
                context_json,
                dumps(usage.to_dict()),
                time.time(),
                run_id,
            ),
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM workflow_state WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        run = run_from_row(row)
        run.steps = [
            step_from_row(s)
            for s in self.conn.execute(
                f"SELECT {STEP_COLUMNS} FROM step_results WHERE run_id = ? ORDER BY idx", (run_id,)
            )
        ]
        return run

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        where, params = ("WHERE status = ?", (status.value,)) if status else ("", ())
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM workflow_state {where} "
            "ORDER BY created_at DESC, run_id LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [run_from_row(r) for r in rows]

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


class _Transaction:
    """``with _Transaction(conn, what):`` — BEGIN (IMMEDIATE), COMMIT, or ROLLBACK and raise
    a :class:`StateError` saying what failed."""

    def __init__(self, conn: sqlite3.Connection, what: str, *, immediate: bool = False) -> None:
        self.conn, self.what, self.immediate = conn, what, immediate

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None:
            self.conn.execute("COMMIT")
            return
        self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StateError(f"{self.what} failed on the state database: {exc}") from exc
