"""flujo-core's own state backends (and its ``local`` engine), registered through the hooks a
third party uses.

The plugin manager registers this module first (as ``flujo-core``), so ``sqlite``,
``postgresql``, ``postgres`` and the ``local`` engine are taken before any plugin loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flujo.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from flujo.domain.interfaces import StateBackend, StateLocation
    from flujo.plugins.hookspecs import RegisterEngines, RegisterStateBackends

OWNER = "flujo-core"


def sqlite_backend(location: StateLocation) -> StateBackend:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:`` or a
    plain path."""
    from flujo.state.sqlite import SQLiteBackend

    return SQLiteBackend(location.path(), synchronous=location.settings.synchronous)


def postgres_backend(location: StateLocation) -> StateBackend:
    """``postgresql://user@host:port/db`` (``postgres://`` too); needs flujo-core[postgres]."""
    from flujo.domain.errors import ConfigError

    try:
        from flujo.state.postgres import PostgresBackend
    except ImportError as exc:
        raise ConfigError(
            f"state uri is {location.scheme}://... but psycopg is not installed: "
            "pip install 'flujo-core[postgres]'"
        ) from exc
    return PostgresBackend(location.uri, pool_size=location.settings.pool_size)


@hookimpl
def flujo_register_state_backends(register: RegisterStateBackends) -> None:
    """``sqlite`` (the default) and ``postgresql``/``postgres``."""
    register("sqlite", sqlite_backend)
    register("postgresql", postgres_backend)
    register("postgres", postgres_backend)


@hookimpl
def flujo_register_engines(register: RegisterEngines) -> None:
    """``local``: runs execute in this process (the default ``[engine] kind``)."""
    from flujo.application.engines import local_engine

    register("local", local_engine)
