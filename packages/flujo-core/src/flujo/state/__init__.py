"""Durable execution state: backends behind :class:`~flujo.domain.interfaces.StateBackend`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flujo.domain.errors import ConfigError

if TYPE_CHECKING:
    from flujo.config import FlujoConfig, StateSettings
    from flujo.domain.interfaces import Migration, StateBackend


async def open_state(
    config: FlujoConfig, *, create: bool = True, read_only: bool = False
) -> StateBackend:
    """The state backend ``config`` names, opened, with every loaded plugin's migrations applied.

    The caller closes it (``await state.close()``). Plugin commands use this to reach the
    tables they own:

    - commands that only read (listings, audits, reports) pass ``read_only=True``: nothing is
      created or migrated, a missing database is a :class:`StateNotFoundError` ("no state
      database at ...", exit 2), and writes are refused by the database itself. A plugin's
      own tables may be absent (installed after the database was made): check with
      :func:`migrated` and answer "nothing recorded";
    - commands that write but need existing state (resuming, backfilling) pass
      ``create=False``: a missing database is the same error; an existing one is migrated;
    - only commands that start runs create the database (the default).
    """
    backend = open_backend(config.state, config.root)
    plugins = config.plugin_manager
    await backend.open(
        plugins.migrations(backend.dialect) if plugins is not None else (),
        create=create,
        read_only=read_only,
    )
    return backend


async def migrated(state: StateBackend, migrations: Sequence[Migration]) -> bool:
    """Whether every one of ``migrations`` is applied to ``state`` (on a read-only backend
    a plugin's tables may be missing or older: its read commands then report nothing)."""
    from flujo.state.migrations import pending

    if not migrations:
        return True
    rows = await state.fetch_all("SELECT owner, version FROM flujo_migrations")
    return not pending(migrations, [(str(r["owner"]), int(r["version"])) for r in rows])


def open_backend(settings: StateSettings, root: Path) -> StateBackend:
    """The (unopened) backend ``[state] uri`` names; relative SQLite paths resolve from ``root``."""
    uri = settings.uri
    if uri.startswith("sqlite://"):
        from flujo.state.sqlite import SQLiteBackend

        rest = uri[len("sqlite://") :]
        if not rest.startswith("/"):
            raise ConfigError(f"[state] uri {uri!r}: expected sqlite:///path/to/file.db")
        path = rest[1:]
        if path == ":memory:":
            return SQLiteBackend(":memory:", synchronous=settings.synchronous)
        return SQLiteBackend(root / path, synchronous=settings.synchronous)
    if uri.startswith(("postgresql://", "postgres://")):
        try:
            from flujo.state.postgres import PostgresBackend
        except ImportError as exc:
            raise ConfigError(
                "[state] uri is postgresql://... but psycopg is not installed: "
                "pip install 'flujo-core[postgres]'"
            ) from exc

        return PostgresBackend(uri, pool_size=settings.pool_size)
    raise ConfigError(
        f"[state] uri {uri!r}: unsupported scheme (use sqlite:///path.db or postgresql://...)"
    )
