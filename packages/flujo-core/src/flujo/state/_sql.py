"""Every statement the core runs on its state tables, written once for every dialect.

The statements are spelled with ``?`` placeholders and ``{now}`` for the current time; a
:class:`Dialect` says everything SQLite and PostgreSQL do differently, and nothing else does:

- the placeholder (``?`` or ``%s``) and how plugins' named ``:param`` SQL is passed on;
- the clock: ``{now}`` is the database's clock on PostgreSQL (workers' clocks need not agree)
  and, on SQLite, ``flujo_now()``: this process's ``time.time()``, registered on each connection
  by :func:`register_clock` (one machine, one clock), so the parameters are the same too;
- column types and row clustering of the schema;
- whether a write can feed another in one statement (``WITH ... AS (UPDATE ... RETURNING)``):
  PostgreSQL's step commit and stale-run claim are one statement each, SQLite runs the same
  statements one after another in one transaction;
- the claim's locking clause (``FOR UPDATE SKIP LOCKED``; SQLite's ``BEGIN IMMEDIATE`` locks the
  whole database instead).

The upsert is the standard ``ON CONFLICT (key) DO UPDATE``, the same text on both.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass

from flujo.domain.models import RunStatus
from flujo.state._rows import INNER_COLUMNS, RUN_COLUMNS, STEP_COLUMNS

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_SQLITE_CLOCK = "flujo_now"


def translate_params(sql: str) -> str:
    """``:name`` placeholders to psycopg's ``%(name)s`` (``::casts`` are left alone)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def register_clock(conn: sqlite3.Connection) -> None:
    """Give a SQLite connection the ``{now}`` of :data:`SQLITE` (every connection that runs
    these statements needs it: the backend's, the renewer's, a stopping process's)."""
    conn.create_function(_SQLITE_CLOCK, 0, time.time)


@dataclass(frozen=True)
class Dialect:
    name: str
    param: str
    """The positional placeholder of the driver."""
    now: str
    """SQL for the current time, in seconds since the epoch."""
    real: str
    """The column type of a float."""
    clustered: str
    """Appended to ``CREATE TABLE step_results (...)``."""
    chained_writes: bool
    """A write can feed another in one statement (``WITH ... AS (UPDATE ... RETURNING ...)``)."""
    skip_locked: str
    """Appended to the stale-run claim's row selection."""
    named_params: bool
    """The driver takes plugins' ``:name`` placeholders as written."""

    def sql(self, template: str) -> str:
        """``template`` (``?`` placeholders, ``{now}``) in this dialect."""
        return template.replace("{now}", self.now).replace("?", self.param)

    def plugin_sql(self, sql: str) -> str:
        """A plugin's statement (named ``:param`` placeholders) as the driver takes it."""
        return sql if self.named_params else translate_params(sql)


SQLITE = Dialect(
    name="sqlite",
    param="?",
    now=f"{_SQLITE_CLOCK}()",
    real="REAL",
    # SQLite keeps step rows in their primary key's order (a WITHOUT ROWID table): a step's
    # commit then writes one page of step_results, not a table page and a key-index page.
    # The columns, key and constraints are the same, so a database made before with a rowid
    # table (no migration rebuilds it) reads and writes the same.
    clustered=" WITHOUT ROWID",
    chained_writes=False,
    skip_locked="",
    named_params=True,
)
POSTGRESQL = Dialect(
    name="postgresql",
    param="%s",
    now="extract(epoch from clock_timestamp())",
    real="DOUBLE PRECISION",
    clustered="",
    chained_writes=True,
    skip_locked=" FOR UPDATE SKIP LOCKED",
    named_params=False,
)
DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}

_RUNNING = RunStatus.RUNNING.value
# A take's epoch is the run's new version: it grows with every take, and the taker knows it
# before the take lands (the heartbeat renews it even while the event loop is blocked).
_TAKE = "lease_epoch = version + 1, version = version + 1"
# The fence of every write a worker makes to its run: still running, still its take.
_HELD = "run_id = ? AND status = 'running' AND lease_owner = ? AND lease_epoch = ?"


def _upsert(table: str, key: str, columns: str) -> str:
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(
        f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in columns.split(",")) if c not in keys
    )
    return f"ON CONFLICT ({key}) DO UPDATE SET {updates}"


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class Statements:
    """The core's statements in one dialect (see the module's docstring); parameters are the
    same on every dialect, in the order the ``?`` appear."""

    def __init__(self, d: Dialect) -> None:
        self.dialect = d
        s = d.sql
        self.migrations_table = (
            "CREATE TABLE IF NOT EXISTS flujo_migrations (owner TEXT NOT NULL, "
            f"version INTEGER NOT NULL, applied_at {d.real} NOT NULL, "
            "PRIMARY KEY (owner, version))"
        )
        self.applied = "SELECT owner, version FROM flujo_migrations"
        self.migration_applied = s("SELECT 1 FROM flujo_migrations WHERE owner = ? AND version = ?")
        self.record_migration = s("INSERT INTO flujo_migrations VALUES (?, ?, {now})")

        # (run_id, pipeline_name, pipeline_version, pipeline_ref, status, current_step,
        #  input, context, usage, created_at, updated_at, engine, owner, lease_s)
        self.create_run = s(
            f"INSERT INTO workflow_state ({RUN_COLUMNS}, lease_owner, lease_expires_at, "
            "lease_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, 1, ?, ?, "
            "{now} + ?, 1)"
        )
        # The decision is this one statement, on the version the caller read: never on a
        # separate read that another worker's commit could have overtaken. A run may be taken
        # unless it succeeded or runs under another worker's live lease.
        # (status, owner, lease_s, run_id, seen_version, succeeded, running, owner)
        self.take = s(
            "UPDATE workflow_state SET status = ?, output = NULL, error = NULL, "
            "lease_owner = ?, lease_expires_at = {now} + ?, updated_at = {now}, "
            f"{_TAKE} WHERE run_id = ? AND version = ? AND status != ? AND (status != ? OR "
            "lease_owner IS NULL OR lease_owner = ? OR lease_expires_at < {now})"
        )
        # (lease_s, run_id, owner, epoch)
        self.renew = s(f"UPDATE workflow_state SET lease_expires_at = {{now}} + ? WHERE {_HELD}")
        # A run its holder finished: its lease is released, not lost (no other take since).
        # (run_id, epoch)
        self.ended_under = s(
            "SELECT 1 FROM workflow_state WHERE run_id = ? AND lease_epoch = ? "
            "AND status != 'running'"
        )

        # A step's commit: the run row (advanced past a step that succeeded), then the step
        # row, written only when the run row's fence let the first write through.
        # (current_step, context, last_output, usage, run_id, owner, epoch)
        self.advance = s(
            "UPDATE workflow_state SET current_step = ?, context = ?, last_output = ?, "
            f"usage = ?, updated_at = {{now}}, version = version + 1 WHERE {_HELD}"
        )
        # (context, usage, run_id, owner, epoch)
        self.no_advance = s(
            "UPDATE workflow_state SET context = ?, usage = ?, updated_at = {now}, "
            f"version = version + 1 WHERE {_HELD}"
        )
        # The step's row, written only when the run row's fence let its update through.
        # (run_id, idx, name, status, output, error, attempts, latency_ms, usage)
        step_row = self._row("step_results", f"run_id, idx, {STEP_COLUMNS}", "run_id, idx", 9)
        # The run row of an inner step's commit: its current step and last output stay where
        # they are (the control-flow step holding it is still running); the context is kept
        # when None is given (a scope of its own).
        # (context or None, usage, run_id, owner, epoch)
        inner_run = s(
            "UPDATE workflow_state SET context = coalesce(?, context), usage = ?, "
            f"updated_at = {{now}}, version = version + 1 WHERE {_HELD}"
        )
        # (run_id, path, status, output, error, attempts, latency_ms, usage, idx, context)
        inner_row = self._row("inner_step_results", f"run_id, {INNER_COLUMNS}", "run_id, path", 10)
        # A step's commit, keyed by whether the run advances (a succeeded top-level step):
        # chained, one statement of (update params..., row params...); otherwise the update,
        # then the row when the update changed one row, in one transaction.
        self.step_commit = {
            True: self._fenced(self.advance, step_row),
            False: self._fenced(self.no_advance, step_row),
        }
        self.inner_commit = self._fenced(inner_run, inner_row)
        # A batch of inner steps (``save_inner_steps``): the run row's fenced update once,
        # then every row. Chained: one statement whatever the batch's size, the rows passed
        # as one array per column of INNER_COLUMNS, (context or None, usage, run_id, owner,
        # epoch, paths, statuses, outputs, errors, attempts, latencies, usages, idxs,
        # contexts). Otherwise: the update, then the row statement once per row.
        if d.chained_writes:
            types = ("text",) * 4 + ("integer", d.real, "text", "integer", "text")
            arrays = ", ".join(f"?::{t}[]" for t in types)
            rows = s(
                f"INSERT INTO inner_step_results (run_id, {INNER_COLUMNS}, created_at) "
                f"SELECT fenced.run_id, r.*, {{now}} FROM fenced, unnest({arrays}) "
                f"AS r({INNER_COLUMNS}) "
                + _upsert("inner_step_results", "run_id, path", f"{INNER_COLUMNS}, created_at")
            )
            self.inner_batch: tuple[str, ...] = (
                f"WITH fenced AS ({inner_run} RETURNING run_id) {rows}",
            )
        else:
            self.inner_batch = (inner_run, inner_row)
        # (status, output, error, context, usage, run_id, owner, epoch)
        self.finalize = s(
            "UPDATE workflow_state SET status = ?, output = ?, error = ?, context = ?, "
            "usage = ?, updated_at = {now}, lease_owner = NULL, lease_expires_at = NULL, "
            f"version = version + 1 WHERE {_HELD}"
        )
        # A stopping process's release (fenced like the rest), then its read of the outcome.
        # (status, error, run_id, running, owner, epoch)
        self.interrupt_now = s(
            "UPDATE workflow_state SET status = ?, error = ?, lease_owner = NULL, "
            "lease_expires_at = NULL, updated_at = {now}, version = version + 1 WHERE "
            "run_id = ? AND status = ? AND lease_owner = ? AND lease_epoch = ?"
        )
        self.outcome = s("SELECT status, output, error FROM workflow_state WHERE run_id = ?")

        self.get_run = s(f"SELECT {RUN_COLUMNS} FROM workflow_state WHERE run_id = ?")
        self.get_steps = s(f"SELECT {STEP_COLUMNS} FROM step_results WHERE run_id = ? ORDER BY idx")
        self.get_inner = s(
            f"SELECT {INNER_COLUMNS} FROM inner_step_results WHERE run_id = ? "
            "ORDER BY idx, created_at, path"
        )
        # Stale runs: expired leases and interrupted runs, oldest lease first. An interrupted
        # run becomes running at its claim, so no other claimer can take it too. Runs an
        # engine drives (``engine`` set) are that engine's to recover, never claimed here.
        # select: (running, interrupted[, pipeline_version], limit)
        # set:    (running, owner, lease_s)
        stale = (
            "SELECT run_id FROM workflow_state WHERE ((status = ? AND lease_expires_at < "
            "{now}) OR status = ?) AND engine IS NULL %s ORDER BY lease_expires_at LIMIT ?"
            + d.skip_locked
        )
        claim = (
            "UPDATE workflow_state SET status = ?, lease_owner = ?, "
            f"lease_expires_at = {{now}} + ?, {_TAKE} WHERE "
        )
        self.stale = {
            versioned: s(stale % ("AND pipeline_version = ?" if versioned else ""))
            for versioned in (False, True)
        }
        # chained: one statement, (set..., select...), returning the claimed ids.
        # Otherwise: run once per id selected by ``stale``, (set..., run_id).
        self.claim = {
            versioned: (
                s(claim) + f"run_id IN ({self.stale[versioned]}) RETURNING run_id"
                if d.chained_writes
                else s(claim + "run_id = ?")
            )
            for versioned in (False, True)
        }

    def _row(self, table: str, columns: str, key: str, n: int) -> str:
        """The upsert of a step's row (chained: fed by the ``fenced`` update)."""
        d = self.dialect
        upsert = _upsert(table, key, f"{columns}, created_at")
        source = (
            f"SELECT {_marks(n)}, {{now}} FROM fenced"
            if d.chained_writes
            else (f"VALUES ({_marks(n)}, {{now}})")
        )
        return d.sql(f"INSERT INTO {table} ({columns}, created_at) {source} {upsert}")

    def _fenced(self, update: str, row: str) -> tuple[str, ...]:
        if self.dialect.chained_writes:
            return (f"WITH fenced AS ({update} RETURNING run_id) {row}",)
        return (update, row)


SQLITE_STATEMENTS = Statements(SQLITE)
POSTGRESQL_STATEMENTS = Statements(POSTGRESQL)
