"""Durable execution state: backends behind :class:`~flujo.domain.interfaces.StateBackend`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flujo.domain.errors import ConfigError

if TYPE_CHECKING:
    from flujo.config import FlujoConfig, StateSettings
    from flujo.domain.interfaces import StateBackend


async def open_state(config: FlujoConfig) -> StateBackend:
    """The state backend ``config`` names, opened, with every loaded plugin's migrations applied.

    The caller closes it (``await state.close()``). Plugin commands use this to reach the
    tables they own.
    """
    backend = open_backend(config.state, config.root)
    plugins = config.plugin_manager
    await backend.open(plugins.migrations(backend.dialect) if plugins is not None else ())
    return backend


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
