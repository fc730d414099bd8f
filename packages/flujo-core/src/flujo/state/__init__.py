"""Durable execution state: backends behind :class:`~flujo.domain.interfaces.StateBackend`."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flujo.domain.errors import ConfigError

if TYPE_CHECKING:
    from flujo.config import FlujoConfig, StateSettings
    from flujo.domain.interfaces import Migration, StateBackend, StateLocation
    from flujo.plugins.registry import Registry


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
    plugins = config.plugin_manager
    backend = open_backend(
        config.state, config.root, plugins.registry if plugins is not None else None
    )
    await backend.open(
        plugins.migrations(backend.dialect) if plugins is not None else (),
        create=create,
        read_only=read_only,
    )
    return backend


async def migrated(state: StateBackend, migrations: Sequence[Migration]) -> bool:
    """Whether a plugin's read path may read the tables of its ``migrations`` in ``state``
    (read-only backends never migrate, so a plugin's tables may be missing or older):

    - ``True``: every one is applied: read them;
    - ``False``: none is: the tables were never created here (the database predates the
      plugin), so nothing was ever recorded: answer "nothing recorded";
    - :class:`~flujo.domain.errors.StateOutdatedError` (a user error, exit 2): some are applied
      and newer ones are not (the plugin was upgraded since). The rows exist; a read must not
      hide them, so it fails with one line naming the database, the plugin, the versions and
      ``flujo state upgrade``. A run view shows it as the section's error.
    """
    from flujo.state.migrations import require_current

    if not migrations:
        return True
    rows = await state.fetch_all("SELECT owner, version FROM flujo_migrations")
    applied = [(str(r["owner"]), int(r["version"])) for r in rows]
    return require_current(migrations, applied, state_where(state))


def state_where(state: StateBackend) -> str:
    """Where ``state`` is, for a message: a SQLite file's path, a PostgreSQL DSN without its
    password; a backend that has neither is named by its dialect."""
    from flujo.state.dsn import redact_dsn

    path = getattr(state, "path", None)
    if path is not None:
        return str(path)
    dsn = getattr(state, "dsn", None)
    if isinstance(dsn, str):
        return redact_dsn(dsn)
    return f"({state.dialect} backend {type(state).__name__})"


def open_backend(
    settings: StateSettings,
    root: Path,
    registry: Registry | None = None,
    *,
    what: str = "[state] uri",
) -> StateBackend:
    """The (unopened) backend ``settings.uri`` names, by its scheme, from ``registry`` (the
    loaded plugins'; default: flujo-core's own ``sqlite`` and ``postgresql``). Relative SQLite
    paths resolve from ``root``. An unknown scheme is a :class:`ConfigError` naming ``what``
    and every registered scheme with its plugin."""
    location = state_location(settings, root, what=what)
    if registry is None:
        registry = _core_registry()
    return registry.state_backend(location, what=what)


def state_backend(location: StateLocation, registry: Registry | None = None) -> StateBackend:
    """The (unopened) backend registered for ``location.scheme`` in ``registry`` (default:
    flujo-core's own). A plugin's backend that wraps the core's SQLite or PostgreSQL one makes
    it with this, from a location whose ``uri`` and ``scheme`` it rewrote."""
    return (registry or _core_registry()).state_backend(location)


def state_location(
    settings: StateSettings, root: Path, *, what: str = "[state] uri"
) -> StateLocation:
    """``settings.uri`` parsed: ``scheme://...`` names its scheme, a plain path is ``sqlite``."""
    from flujo.domain.interfaces import StateLocation
    from flujo.state.dsn import redact_dsn

    uri = settings.uri
    found = _SCHEME.match(uri)
    if found is not None:
        scheme = found.group(1).lower()
    elif _SCHEME_NO_SLASHES.match(uri) or not uri.strip():
        raise ConfigError(
            f"{what} {redact_dsn(uri)!r}: expected scheme://... "
            "(sqlite:///path/to/file.db, postgresql://...) or a file path"
        )
    else:
        scheme = "sqlite"
    return StateLocation(uri=uri, scheme=scheme, root=root, settings=settings)


@functools.cache
def _core_registry() -> Registry:
    """A registry holding flujo-core's own backends only (no plugin loaded)."""
    from flujo.plugins.manager import PluginManager

    return PluginManager().registry


# RFC 3986 scheme; a single letter before ':' would be a Windows drive, not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SCHEME_NO_SLASHES = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:(?![/\\])")
