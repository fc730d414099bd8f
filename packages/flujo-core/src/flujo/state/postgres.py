"""PostgreSQL state backend, for many workers on many machines (``flujo-core[postgres]``).

Same schema and behaviour as SQLite. Connections come from a psycopg 3 async pool. Migrations
run under a transaction-scoped advisory lock, so any number of workers may start at once.
Lease times use the database's clock, so workers' clocks need not agree. Plugin SQL uses the
same named ``:param`` placeholders as on SQLite; they are translated for psycopg here. Every
write of a run is fenced by the lease it is made under; the heartbeat renews leases on a
connection of its own (one per runner), from its own thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool

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
from flujo.state._sql import POSTGRESQL_STATEMENTS as _SQL
from flujo.state._sql import translate_params
from flujo.state.dsn import redact_dsn
from flujo.state.migrations import core_migrations, require_core_schema

if TYPE_CHECKING:
    from psycopg import AsyncConnection

_RUNNING = RunStatus.RUNNING.value
_SUCCEEDED = RunStatus.SUCCEEDED.value
_INTERRUPTED = RunStatus.INTERRUPTED.value
_MIGRATION_LOCK = 0x666C756A6F  # "flujo": one advisory lock key for every flujo database
__all__ = ["PostgresBackend", "translate_params"]


async def _read_only_session(conn: AsyncConnection[Any]) -> None:
    # Every transaction of a read-only backend's sessions refuses writes, DDL included.
    await conn.execute("SET default_transaction_read_only = on")
    await conn.commit()


class PostgresBackend:
    """:class:`~flujo.domain.interfaces.StateBackend` on PostgreSQL."""

    dialect = "postgresql"

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        """The open connection pool (raises :class:`StateError` before :meth:`open`)."""
        if self._pool is None:
            raise StateError("the PostgreSQL state backend is not open")
        return self._pool

    async def open(
        self,
        migrations: Sequence[Migration] = (),
        *,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        """Connect and apply the core's and ``migrations``.

        ``create=False``: the flujo tables must exist in the connection's schema
        (:class:`StateNotFoundError` otherwise, and none is created). ``read_only``: the same,
        with nothing migrated and every session ``default_transaction_read_only``, so not
        even a bug can write (and a role with only ``SELECT`` suffices).
        """
        if self._pool is not None:
            return
        # Autocommit: a statement commits on the server as it runs, not when this coroutine
        # next gets the event loop (a blocking step could delay that past a lease's expiry).
        # Multi-statement writes use explicit transactions.
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=30,
            kwargs={"autocommit": True},
            configure=_read_only_session if read_only else None,
        )
        try:
            await pool.open(wait=True, timeout=30)
        except psycopg.Error as exc:  # PoolTimeout is one too
            await pool.close()
            raise StateError(
                f"cannot connect to the state database {redact_dsn(self.dsn)}: {exc}"
            ) from exc
        self._pool = pool
        try:
            if read_only or not create:
                applied = await self._applied()
                if read_only:
                    require_core_schema(self.dialect, applied, redact_dsn(self.dsn))
                    return
            await self._migrate([*core_migrations(self.dialect), *migrations])
        except BaseException:
            await self.close()
            raise

    async def _applied(self) -> list[tuple[str, int]]:
        """``(owner, version)`` of every applied migration; :class:`StateNotFoundError` when
        the schema has no flujo tables (PostgreSQL's "no database file")."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT to_regclass('flujo_migrations') IS NOT NULL, current_schema()"
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                schema = row[1] if row is not None and row[1] else "(none)"
                raise StateNotFoundError(
                    f"no state database at {redact_dsn(self.dsn)} "
                    f"(no flujo tables in schema {schema})"
                )
            cur = await conn.execute(_SQL.applied)
            return [(str(owner), int(version)) for owner, version in await cur.fetchall()]

    async def _migrate(self, migrations: Sequence[Migration]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            # Held until commit: workers starting together apply each migration once.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(_SQL.migrations_table)
            cur = await conn.execute(_SQL.applied)
            done = {(row[0], row[1]) for row in await cur.fetchall()}
            ordered = sorted(migrations, key=lambda m: (m.owner != "flujo", m.owner, m.version))
            for mig in ordered:
                if (mig.owner, mig.version) in done:
                    continue
                try:
                    for statement in mig.statements:
                        await conn.execute(statement)
                except psycopg.Error as exc:
                    raise StateError(
                        f"migration {mig.owner} v{mig.version} failed on "
                        f"{redact_dsn(self.dsn)}: {exc}"
                    ) from exc
                await conn.execute(_SQL.record_migration, (mig.owner, mig.version))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def create_run(self, run: RunRecord, *, owner: str, lease_s: float) -> Lease:
        async with self.pool.connection() as conn:
            await conn.execute(
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
        async with self.pool.connection() as conn:
            # One statement decides, on the version the caller read. Under READ COMMITTED a
            # concurrent writer's row lock makes this wait, then re-check the WHERE clause
            # against the committed row: two takers never both win.
            cur = await conn.execute(
                _SQL.take,
                (_RUNNING, owner, lease_s, run_id, seen_version, _SUCCEEDED, _RUNNING, owner),
            )
        return Lease(owner, seen_version + 1) if cur.rowcount == 1 else None

    def lease_renewer(self) -> _Renewer:
        return _Renewer(self.dsn)

    async def claim_stale(
        self, owner: str, lease_s: float, *, limit: int, pipeline_version: str | None = None
    ) -> list[str]:
        versioned = bool(pipeline_version)
        params: tuple[Any, ...] = (
            _RUNNING,
            owner,
            lease_s,
            _RUNNING,
            _INTERRUPTED,
            *((pipeline_version,) if versioned else ()),
            limit,
        )
        async with self.pool.connection() as conn:
            # SKIP LOCKED: concurrent claimers each take different rows, none waits. An
            # interrupted run becomes running here, so no other claimer can take it too.
            cur = await conn.execute(_SQL.claim[versioned], params)
            return [row[0] for row in await cur.fetchall()]

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
        run_usage = usage_json(usage)
        held = (run_id, lease.owner, lease.epoch)
        advance = step.status is StepStatus.SUCCEEDED
        run_params: tuple[Any, ...] = (
            (index + 1, context_json, output, run_usage) if advance else (context_json, run_usage)
        )
        # Without plugin writes, one statement, so one server-side transaction: the fence (the
        # run row's update) and the step row commit together or not at all, and the row lock
        # is never held across this coroutine's awaits (a blocking step elsewhere could
        # stretch those past the heartbeat's next renewal, which would wait on the lock).
        (sql,) = _SQL.step_commit[advance]
        params = (
            *run_params,
            *held,
            run_id,
            index,
            step.name,
            step.status.value,
            output,
            step.error,
            step.attempts,
            step.latency_ms,
            usage_json(step.usage),
        )
        await self._fenced(sql, params, writes, run_id, step.name)

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
        # save_step's fence and single statement; the run's current step and last output
        # stay where they are (the control-flow step at ``index`` is still running).
        (sql,) = _SQL.inner_commit
        await self._fenced(
            sql,
            (
                context_json,
                usage_json(usage),
                run_id,
                lease.owner,
                lease.epoch,
                run_id,
                step.name,
                step.status.value,
                dumps(step.output),
                step.error,
                step.attempts,
                step.latency_ms,
                usage_json(step.usage),
                index,
                scope_context_json,
            ),
            writes,
            run_id,
            step.name,
        )

    async def save_inner_steps(
        self,
        run_id: str,
        rows: Sequence[InnerRow],
        *,
        context_json: str | None,
        usage: Usage,
        lease: Lease,
    ) -> None:
        # One statement for the whole batch (see InnerStepBatches), so one server-side
        # transaction, as save_inner_step's. A path given twice keeps its last row: one
        # statement's upsert may not touch a row twice.
        last = {row.step.name: row for row in rows}
        steps = [row.step for row in last.values()]
        (sql,) = _SQL.inner_batch
        params = (
            context_json,
            usage_json(usage),
            run_id,
            lease.owner,
            lease.epoch,
            [s.name for s in steps],
            [s.status.value for s in steps],
            [dumps(s.output) for s in steps],
            [s.error for s in steps],
            [s.attempts for s in steps],
            [s.latency_ms for s in steps],
            [usage_json(s.usage) for s in steps],
            [row.index for row in last.values()],
            [row.scope_context_json for row in last.values()],
        )
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
        if steps and cur.rowcount != len(steps):
            raise fenced_out(run_id)

    async def _fenced(
        self,
        sql: str,
        params: tuple[Any, ...],
        writes: Sequence[StepWrite],
        run_id: str,
        step: str,
    ) -> None:
        """Run a step's fenced statement (which writes one row, or none when the lease is no
        longer held) and then plugins' ``writes``, all in one transaction."""
        async with self.pool.connection() as conn:
            if not writes:
                cur = await conn.execute(sql, params)
            else:
                # Plugins' rows join the step's transaction (after the step's row, as on SQLite),
                # pipelined: BEGIN, the fenced statement and every write go out together, one
                # round trip, then COMMIT, or ROLLBACK when the fence refused (none committed).
                async with conn.pipeline() as pipe, conn.transaction():
                    cur = await conn.execute(sql, params)
                    for write in writes:
                        await conn.execute(_SQL.dialect.plugin_sql(write.sql), dict(write.params))
                    try:
                        await pipe.sync()
                    except psycopg.Error as exc:
                        raise _write_failed(writes, step, run_id, exc) from exc
                    if cur.rowcount != 1:
                        raise fenced_out(run_id)
        if cur.rowcount != 1:
            raise fenced_out(run_id)

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
        async with self.pool.connection() as conn:
            cur = await conn.execute(
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
        async with self.pool.connection() as conn:
            cur = await conn.execute(_SQL.get_run, (run_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            run = run_from_row(row)
            cur = await conn.execute(_SQL.get_steps, (run_id,))
            run.steps = [step_from_row(s) for s in await cur.fetchall()]
            cur = await conn.execute(_SQL.get_inner, (run_id,))
            run.inner_steps = [inner_from_row(s) for s in await cur.fetchall()]
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
        async with self.pool.connection() as conn:
            cur = await conn.execute(translate_params(sql), params)
            return [run_from_row(r) for r in await cur.fetchall()]

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
        async with self.pool.connection() as conn:
            cur = await conn.execute(translate_params(sql), params)
            names = [d.name for d in cur.description or ()]
            rows = [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
        return counted(rows, by_pipeline)

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_SQL.dialect.plugin_sql(sql), dict(params or {}))
                return cur.rowcount
        except psycopg.Error as exc:
            raise StateError(f"state statement failed: {exc}") from exc

    async def fetch_all(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_SQL.dialect.plugin_sql(sql), dict(params or {}))
                names = [d.name for d in cur.description or ()]
                return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
        except psycopg.Error as exc:
            raise StateError(f"state query failed: {exc}") from exc


def _write_failed(
    writes: Sequence[StepWrite], step: str, run_id: str, exc: psycopg.Error
) -> StateError:
    """A pipelined commit does not say which statement failed: name every plugin in it."""
    owners = ", ".join(repr(o) for o in dict.fromkeys(w.owner for w in writes))
    return StateError(
        f"plugin {owners}: its write in the commit of step {step!r} of run {run_id} failed: {exc}"
    )


class _Renewer:
    """Renews leases on a sync connection of its own, from the heartbeat thread, so renewal
    needs neither the event loop nor a pool connection a blocked step might be holding."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    def renew(self, run_id: str, lease: Lease, lease_s: float) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
            cur = self._conn.execute(_SQL.renew, (lease_s, run_id, lease.owner, lease.epoch))
            if cur.rowcount == 1:
                return True
            cur = self._conn.execute(_SQL.ended_under, (run_id, lease.epoch))
            return cur.fetchone() is not None
        except psycopg.Error as exc:
            self.close()  # a broken connection is replaced at the next beat
            raise StateError(
                f"renewing the lease of run {run_id} on {redact_dsn(self._dsn)} failed: {exc}"
            ) from exc

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
