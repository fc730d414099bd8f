"""The default state backend: one SQLite file in WAL mode.

Statements run inline on the event loop: a WAL commit with ``synchronous=NORMAL`` takes tens
of microseconds, far less than handing it to a thread would cost. ``NORMAL`` keeps every
committed step through a killed process; ``[state] synchronous = "full"`` also survives a
power cut, at the price of an fsync per step. Several processes on one machine may share the
file: leases and stale-run claims are serialized by ``BEGIN IMMEDIATE``. Every write of a run
is fenced: it names the lease it is made under, and the row must still hold that lease.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flujo.domain.errors import StateError, StateNotFoundError
from flujo.domain.interfaces import InnerRow, Lease, Migration, StepWrite
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage
from flujo.state._listing import RunFilter, count_sql, counted, list_sql
from flujo.state._rows import (
    RUN_COLUMNS,
    could_name_a_run,
    dumps,
    fenced_out,
    inner_from_row,
    run_from_row,
    step_from_row,
    usage_json,
)
from flujo.state._sql import SQLITE_STATEMENTS as _SQL
from flujo.state._sql import register_clock
from flujo.state.migrations import core_migrations, require_core_schema

_RUNNING = RunStatus.RUNNING.value
_INTERRUPTED = RunStatus.INTERRUPTED.value
_SUCCEEDED = RunStatus.SUCCEEDED.value
# A step's commit: the run row (advanced past a step that succeeded), then the step row.
_ADVANCE, _SAVE_STEP = _SQL.step_commit[True]
_NO_ADVANCE, _ = _SQL.step_commit[False]
_INNER_RUN, _INNER_ROW = _SQL.inner_commit
assert _SQL.inner_batch == _SQL.inner_commit  # SQLite's batch: the same two statements


class SQLiteBackend:
    """:class:`~flujo.domain.interfaces.StateBackend` on one SQLite file (or ``:memory:``)."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, *, synchronous: str = "normal") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._conn: sqlite3.Connection | None = None
        self._step_cursor: sqlite3.Cursor | None = None  # reused by every step's commit

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (raises :class:`StateError` before :meth:`open`)."""
        if self._conn is None:
            raise StateError("the SQLite state backend is not open")
        return self._conn

    async def open(
        self,
        migrations: Sequence[Migration] = (),
        *,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        """Connect and apply the core's and ``migrations``.

        ``create=False``: the file must exist (:class:`StateNotFoundError` otherwise; no folder
        or file is made). ``read_only``: the same, opened ``mode=ro`` with nothing migrated;
        the core tables must be there (plugin tables may not: see
        :func:`flujo.state.migrated`).
        """
        if self._conn is not None:
            return
        must_exist = read_only or not create
        if must_exist:
            self._require_file()
        try:
            if must_exist:
                # A URI with mode=ro/rw: SQLite itself refuses to create the file, so a
                # database removed since the check above is not recreated either.
                mode = "ro" if read_only else "rw"
                uri = f"{Path(self.path).absolute().as_uri()}?mode={mode}"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            else:
                if isinstance(self.path, Path):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    str(self.path), check_same_thread=False, isolation_level=None
                )
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            if read_only:
                conn.execute("PRAGMA query_only=ON")
            register_clock(conn)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        self._conn = conn
        try:
            if read_only:
                require_core_schema(self.dialect, self._applied(), str(self.path))
            else:
                self._migrate([*core_migrations(self.dialect), *migrations])
        except BaseException:
            await self.close()
            raise

    def _require_file(self) -> None:
        path = str(self.path)
        if path == ":memory:" or not Path(path).is_file():
            raise StateNotFoundError(f"no state database at {path}")

    def _applied(self) -> list[tuple[str, int]]:
        """``(owner, version)`` of every applied migration; refuses a file flujo did not make."""
        try:
            rows = self.conn.execute(_SQL.applied).fetchall()
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                raise StateNotFoundError(
                    f"no state database at {self.path} (the file holds no flujo tables)"
                ) from None
            raise StateError(f"cannot read state database {self.path}: {exc}") from exc
        return [(str(owner), int(version)) for owner, version in rows]

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        conn = self.conn
        conn.execute(_SQL.migrations_table)
        for mig in sorted(migrations, key=lambda m: (m.owner != "flujo", m.owner, m.version)):
            # BEGIN IMMEDIATE serializes processes that start at once; re-check inside it.
            with self._immediate(f"migration {mig.owner} v{mig.version}"):
                done = conn.execute(_SQL.migration_applied, (mig.owner, mig.version)).fetchone()
                if done is None:
                    for statement in mig.statements:
                        conn.execute(statement)
                    conn.execute(_SQL.record_migration, (mig.owner, mig.version))

    def _immediate(self, what: str) -> _Transaction:
        return _Transaction(self.conn, what, immediate=True)

    async def close(self) -> None:
        if self._conn is not None:
            self._step_cursor = None
            self._conn.close()
            self._conn = None

    async def create_run(self, run: RunRecord, *, owner: str, lease_s: float) -> Lease:
        self.conn.execute(
            _SQL.create_run,
            (
                run.run_id,
                run.pipeline_name,
                run.pipeline_version,
                run.pipeline_ref,
                run.status.value,
                run.current_step,
                dumps(run.input),
                dumps(run.context),
                usage_json(run.usage),
                run.created_at,
                run.updated_at,
                run.engine,
                owner,
                lease_s,
            ),
        )
        return Lease(owner, 1)

    async def acquire_lease(
        self, run_id: str, owner: str, lease_s: float, *, seen_version: int
    ) -> Lease | None:
        cur = self.conn.execute(
            _SQL.take,
            (_RUNNING, owner, lease_s, run_id, seen_version, _SUCCEEDED, _RUNNING, owner),
        )
        return Lease(owner, seen_version + 1) if cur.rowcount == 1 else None

    def lease_renewer(self) -> _Renewer:
        return _Renewer(self)

    async def claim_stale(
        self, owner: str, lease_s: float, *, limit: int, pipeline_version: str | None = None
    ) -> list[str]:
        versioned = bool(pipeline_version)
        params: tuple[Any, ...] = (
            _RUNNING,
            _INTERRUPTED,
            *((pipeline_version,) if versioned else ()),
            limit,
        )
        # BEGIN IMMEDIATE is SQLite's lock for the claim (PostgreSQL skips locked rows).
        with self._immediate("claiming stale runs"):
            ids = [row[0] for row in self.conn.execute(_SQL.stale[versioned], params)]
            self.conn.executemany(
                _SQL.claim[versioned], [(_RUNNING, owner, lease_s, run_id) for run_id in ids]
            )
        return ids

    async def save_step(
        self,
        run_id: str,
        index: int,
        step: StepResult,
        *,
        context_json: str,
        usage: Usage,
        lease: Lease,
        writes: Sequence[StepWrite] = (),
    ) -> None:
        output = dumps(step.output)
        conn = self.conn
        # The hot path of every run: constant statements (their compiled form is cached), one
        # cursor for all of them, and the transaction spelled out rather than a context
        # manager built for each step.
        if (cur := self._step_cursor) is None:
            cur = self._step_cursor = conn.cursor()
        cur.execute("BEGIN")
        try:
            # The run row first: its fence decides, and its lock keeps a claimer out until
            # this commit is done.
            if step.status is StepStatus.SUCCEEDED:
                cur.execute(
                    _ADVANCE,
                    (
                        index + 1,
                        context_json,
                        output,
                        usage_json(usage),
                        run_id,
                        lease.owner,
                        lease.epoch,
                    ),
                )
            else:
                cur.execute(
                    _NO_ADVANCE,
                    (context_json, usage_json(usage), run_id, lease.owner, lease.epoch),
                )
            if cur.rowcount != 1:
                raise fenced_out(run_id)
            cur.execute(
                _SAVE_STEP,
                (
                    run_id,
                    index,
                    step.name,
                    step.status.value,
                    output,
                    step.error,
                    step.attempts,
                    step.latency_ms,
                    usage_json(step.usage),
                ),
            )
            for write in writes:  # plugins' rows: in this transaction, after the step's
                _execute_write(conn, write, step.name, run_id)
            cur.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:  # a failed COMMIT may have ended it already
                cur.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StateError(
                    f"saving step {step.name!r} of run {run_id} failed on the state database: {exc}"
                ) from exc
            raise

    async def save_inner_step(
        self,
        run_id: str,
        index: int,
        step: StepResult,
        *,
        context_json: str | None,
        scope_context_json: str | None,
        usage: Usage,
        lease: Lease,
        writes: Sequence[StepWrite] = (),
    ) -> None:
        # The fence of save_step; the run's current step and last output stay where they
        # are (the control-flow step at ``index`` is still running).
        conn = self.conn
        with _Transaction(conn, f"saving step {step.name!r} of run {run_id}"):
            cur = conn.execute(
                _INNER_RUN, (context_json, usage_json(usage), run_id, lease.owner, lease.epoch)
            )
            if cur.rowcount != 1:
                raise fenced_out(run_id)
            conn.execute(_INNER_ROW, _inner_row(run_id, InnerRow(index, step, scope_context_json)))
            for write in writes:
                _execute_write(conn, write, step.name, run_id)

    async def save_inner_steps(
        self,
        run_id: str,
        rows: Sequence[InnerRow],
        *,
        context_json: str | None,
        usage: Usage,
        lease: Lease,
    ) -> None:
        # save_inner_step's statements, the run row's once for the whole batch: the items of
        # a map that finish together cost one transaction (see InnerStepBatches).
        conn = self.conn
        if (cur := self._step_cursor) is None:
            cur = self._step_cursor = conn.cursor()
        cur.execute("BEGIN")
        try:
            cur.execute(
                _INNER_RUN, (context_json, usage_json(usage), run_id, lease.owner, lease.epoch)
            )
            if cur.rowcount != 1:
                raise fenced_out(run_id)
            cur.executemany(_INNER_ROW, [_inner_row(run_id, row) for row in rows])
            cur.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:  # a failed COMMIT may have ended it already
                cur.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StateError(
                    f"saving {len(rows)} inner steps of run {run_id} (the first "
                    f"{rows[0].step.name!r}) failed on the state database: {exc}"
                ) from exc
            raise

    async def finalize_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: Any,
        error: str | None,
        context_json: str,
        usage: Usage,
        lease: Lease,
    ) -> None:
        cur = self.conn.execute(
            _SQL.finalize,
            (
                status.value,
                dumps(output),
                error,
                context_json,
                usage_json(usage),
                run_id,
                lease.owner,
                lease.epoch,
            ),
        )
        if cur.rowcount != 1:
            raise fenced_out(run_id)

    async def get_run(self, run_id: str) -> RunRecord | None:
        if not could_name_a_run(run_id):
            return None
        row = self.conn.execute(_SQL.get_run, (run_id,)).fetchone()
        if row is None:
            return None
        run = run_from_row(row)
        run.steps = [step_from_row(s) for s in self.conn.execute(_SQL.get_steps, (run_id,))]
        run.inner_steps = [inner_from_row(s) for s in self.conn.execute(_SQL.get_inner, (run_id,))]
        return run

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int = 50,
        pipeline: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        id_prefix: str | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        where = RunFilter(status, pipeline, created_after, created_before, id_prefix)
        sql, params = list_sql(RUN_COLUMNS, where, after, limit)
        return [run_from_row(r) for r in self.conn.execute(sql, params).fetchall()]

    async def count_runs(
        self,
        *,
        pipeline: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        id_prefix: str | None = None,
        by_pipeline: bool = False,
    ) -> dict[tuple[str | None, RunStatus], int]:
        where = RunFilter(None, pipeline, created_after, created_before, id_prefix)
        sql, params = count_sql(where, by_pipeline)
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        return counted([dict(zip(names, r, strict=True)) for r in cur.fetchall()], by_pipeline)

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


def _inner_row(run_id: str, row: InnerRow) -> tuple[Any, ...]:
    """The parameters of ``_INNER_ROW``."""
    step = row.step
    return (
        run_id,
        step.name,
        step.status.value,
        dumps(step.output),
        step.error,
        step.attempts,
        step.latency_ms,
        usage_json(step.usage),
        row.index,
        row.scope_context_json,
    )


def _execute_write(conn: sqlite3.Connection, write: StepWrite, step: str, run_id: str) -> None:
    try:
        conn.execute(write.sql, dict(write.params))
    except sqlite3.Error as exc:
        raise StateError(
            f"plugin {write.owner!r}: its write in the commit of step {step!r} of run {run_id} "
            f"failed: {exc}"
        ) from exc


class _Renewer:
    """Renews leases on a connection of its own, from the heartbeat thread: the backend's
    connection may be inside a step's transaction, and the event loop may be blocked. An
    in-memory database has no second connection; it shares the backend's (sqlite3 serializes
    calls on one connection)."""

    def __init__(self, backend: SQLiteBackend) -> None:
        self._backend = backend
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if str(self._backend.path) == ":memory:":
            return self._backend.conn
        if self._conn is None:
            conn = sqlite3.connect(
                str(self._backend.path), check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA busy_timeout=10000")
            register_clock(conn)
            self._conn = conn
        return self._conn

    def renew(self, run_id: str, lease: Lease, lease_s: float) -> bool:
        try:
            conn = self._connection()
            cur = conn.execute(_SQL.renew, (lease_s, run_id, lease.owner, lease.epoch))
            if cur.rowcount == 1:
                return True
            return conn.execute(_SQL.ended_under, (run_id, lease.epoch)).fetchone() is not None
        except sqlite3.Error as exc:
            raise StateError(f"renewing the lease of run {run_id} failed: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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
