"""The core's own schema, as versioned migrations (plugins add theirs through a hook)."""

from __future__ import annotations

from collections.abc import Collection

from flujo.domain.errors import StateOutdatedError
from flujo.domain.interfaces import Migration
from flujo.state._sql import DIALECTS

CORE_OWNER = "flujo"


def core_migrations(dialect: str) -> list[Migration]:
    """The core tables: ``workflow_state`` (one row per run) and ``step_results``."""
    # A dialect the core does not know (a plugin's backend) gets portable types.
    d = DIALECTS.get(dialect)
    real, clustered = (d.real, d.clustered) if d is not None else ("REAL", "")
    return [
        Migration(
            CORE_OWNER,
            1,
            (
                f"""CREATE TABLE workflow_state (
                    run_id TEXT PRIMARY KEY,
                    pipeline_name TEXT NOT NULL,
                    pipeline_version TEXT NOT NULL,
                    pipeline_ref TEXT,
                    status TEXT NOT NULL,
                    current_step INTEGER NOT NULL DEFAULT 0,
                    input TEXT,
                    context TEXT NOT NULL,
                    last_output TEXT,
                    output TEXT,
                    error TEXT,
                    usage TEXT NOT NULL,
                    created_at {real} NOT NULL,
                    updated_at {real} NOT NULL,
                    lease_owner TEXT,
                    lease_expires_at {real}
                )""",
                "CREATE INDEX workflow_state_status ON workflow_state (status, created_at)",
                "CREATE INDEX workflow_state_lease ON workflow_state (status, lease_expires_at)",
                "CREATE INDEX workflow_state_created ON workflow_state (created_at)",
                f"""CREATE TABLE step_results (
                    run_id TEXT NOT NULL REFERENCES workflow_state (run_id) ON DELETE CASCADE,
                    idx INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    status TEXT NOT NULL,
                    output TEXT,
                    error TEXT,
                    attempts INTEGER NOT NULL,
                    latency_ms {real} NOT NULL,
                    usage TEXT NOT NULL,
                    created_at {real} NOT NULL,
                    PRIMARY KEY (run_id, idx)
                ){clustered}""",
            ),
        ),
        # Fencing: lease_epoch grows at every take of a run (its holder's token), version at
        # every write (takes are conditional on the version the taker read).
        Migration(
            CORE_OWNER,
            2,
            (
                "ALTER TABLE workflow_state ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE workflow_state ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
            ),
        ),
        # Steps inside branch/loop/map/parallel steps, keyed by their path in the tree. A
        # table of its own: top-level steps keep their (run_id, idx) rows, so runs stored
        # before it resume unchanged. ``context`` is the scope's context after the step when
        # the scope is a copy (a map item, a parallel branch), NULL when it is the run's.
        Migration(
            CORE_OWNER,
            3,
            (
                f"""CREATE TABLE inner_step_results (
                    run_id TEXT NOT NULL REFERENCES workflow_state (run_id) ON DELETE CASCADE,
                    path TEXT NOT NULL,
                    idx INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    output TEXT,
                    error TEXT,
                    attempts INTEGER NOT NULL,
                    latency_ms {real} NOT NULL,
                    usage TEXT NOT NULL,
                    context TEXT,
                    created_at {real} NOT NULL,
                    PRIMARY KEY (run_id, path)
                )""",
            ),
        ),
        # The engine that drives a run step by step (NULL: the local runner), so the local
        # stale drain leaves such runs to their engine.
        Migration(CORE_OWNER, 4, ("ALTER TABLE workflow_state ADD COLUMN engine TEXT",)),
        # One pipeline's runs (`list_runs(pipeline=...)`, the web UI's pipeline filter): newest
        # first, in a time range, from the first index; counted by status from either alone
        # (SQLite, once ANALYZEd, counts by walking an index in status order: the second is
        # that order). Without them both read every run.
        Migration(
            CORE_OWNER,
            5,
            (
                "CREATE INDEX workflow_state_pipeline "
                "ON workflow_state (pipeline_name, created_at, status)",
                "CREATE INDEX workflow_state_pipeline_status "
                "ON workflow_state (pipeline_name, status, created_at)",
            ),
        ),
    ]


def pending(
    migrations: Collection[Migration], applied: Collection[tuple[str, int]]
) -> list[Migration]:
    """The migrations of ``migrations`` whose ``(owner, version)`` is not in ``applied``."""
    done = set(applied)
    return [m for m in migrations if (m.owner, m.version) not in done]


def require_core_schema(dialect: str, applied: Collection[tuple[str, int]], where: str) -> None:
    """A read-only open needs the core tables as this version of flujo knows them.

    Plugin migrations may be missing (a plugin installed after the database was made: its
    commands read an empty table, see :func:`flujo.state.migrated`); core ones may not.
    """
    missing = pending(core_migrations(dialect), applied)
    if missing:
        raise StateOutdatedError(
            f"the state database at {where} predates this flujo (core migrations "
            f"{_versions(missing)} not applied); run `flujo state upgrade` to apply them"
        )


def require_current(
    migrations: Collection[Migration], applied: Collection[tuple[str, int]], where: str
) -> bool:
    """Whether a read may use the tables of ``migrations`` (one plugin's) in a database where
    ``applied`` are done: ``True`` when all of them are; ``False`` when none is (the tables
    were never created there: nothing was ever recorded); :class:`StateOutdatedError` when
    some are and newer ones are not (the plugin was upgraded since: its rows exist, but a
    read-only command may not migrate, and "nothing recorded" would hide them)."""
    missing = pending(migrations, applied)
    if not missing:
        return True
    if len(missing) == len(migrations):
        return False
    done = set(applied)
    owners = sorted({m.owner for m in missing})
    parts = []
    for owner in owners:
        have = [m.version for m in migrations if m.owner == owner and (owner, m.version) in done]
        mine = [m for m in missing if m.owner == owner]
        at = f"at v{max(have)}" if have else "absent"
        parts.append(f"{owner} tables {at}, migrations {_versions(mine)} not applied")
    raise StateOutdatedError(
        f"the state database at {where} predates the installed {', '.join(owners)} "
        f"({'; '.join(parts)}); run `flujo state upgrade` to apply them"
    )


def _versions(migrations: Collection[Migration]) -> str:
    return ", ".join(f"v{m.version}" for m in sorted(migrations, key=lambda m: m.version))
