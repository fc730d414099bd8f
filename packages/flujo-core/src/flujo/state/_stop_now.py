"""Marking a run ``interrupted`` from a process that exits at once (a second Ctrl-C).

The runner's event loop may be blocked by a sync step then, so this uses a short-lived
connection of its own with the plain sync driver and bounded waits, never the backend's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flujo.domain.errors import StateError
from flujo.domain.models import RunStatus
from flujo.state._rows import loads
from flujo.state._sql import POSTGRESQL_STATEMENTS, SQLITE_STATEMENTS, register_clock

if TYPE_CHECKING:
    from flujo.config import StateSettings
    from flujo.domain.interfaces import Lease
    from flujo.plugins.registry import Registry

_WAIT_S = 3.0


def interrupt_run_now(
    settings: StateSettings,
    root: Path,
    run_id: str,
    lease: Lease,
    error: str,
    registry: Registry | None = None,
) -> tuple[RunStatus, Any, str | None]:
    """Store run ``run_id``, running under ``lease``, as interrupted with its lease released,
    then return what the database holds for it: ``(status, output, error)``.

    Only a run still ``running`` under ``lease`` is changed: one that finished meanwhile, or
    that another worker took over, is reported as it is. The step in progress is not
    committed; a resume runs it again. Raises ``Exception`` subclasses of the driver when the
    database cannot be reached within a few seconds, and :class:`StateError` for a plugin's
    backend (it has no sync connection to do this with: its run stays ``running`` and is
    resumable once its lease expires).
    """
    from flujo.state import open_backend
    from flujo.state.sqlite import SQLiteBackend

    backend = open_backend(settings, root, registry)
    # Fenced like every write a worker makes to its run (see flujo.application.lease): still
    # running, still this worker's take; the version moves on, as with every change of status.
    params = (
        RunStatus.INTERRUPTED.value,
        error,
        run_id,
        RunStatus.RUNNING.value,
        lease.owner,
        lease.epoch,
    )
    if isinstance(backend, SQLiteBackend):
        path = str(backend.path)
        conn = sqlite3.connect(path, timeout=_WAIT_S, isolation_level=None)
        register_clock(conn)
        try:
            conn.execute(SQLITE_STATEMENTS.interrupt_now, params)
            row = conn.execute(SQLITE_STATEMENTS.outcome, (run_id,)).fetchone()
        finally:
            conn.close()
    elif type(backend).__module__ == "flujo.state.postgres":
        import psycopg

        dsn = str(getattr(backend, "dsn", settings.uri))
        with psycopg.connect(dsn, autocommit=True, connect_timeout=int(_WAIT_S)) as pg:
            pg.execute(f"SET statement_timeout = {int(_WAIT_S * 1000)}")
            pg.execute(POSTGRESQL_STATEMENTS.interrupt_now, params)
            row = pg.execute(POSTGRESQL_STATEMENTS.outcome, (run_id,)).fetchone()
    else:
        raise StateError(
            f"the {type(backend).__name__} state backend cannot be written from a stopping "
            "process; the run is resumable once its lease expires"
        )
    if row is None:
        raise LookupError(f"run {run_id} is not in the state database")
    return RunStatus(row[0]), loads(row[1]), row[2]
