"""State helpers for tests: a database as an older install left it, and what it holds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flujo.domain.interfaces import Migration


def create_core_state(config_path: Path) -> None:
    """Create the state database ``config_path`` names with the core tables only: what a
    project had before a plugin was installed (no plugin is loaded, so none adds its tables)."""
    from flujo.config import load_config
    from flujo.plugins.manager import PluginManager
    from flujo.state import open_state

    async def create() -> None:
        config = load_config(config_path, plugin_manager=PluginManager(), environ={})
        await (await open_state(config)).close()

    asyncio.run(create())


def sqlite_tables(path: Path) -> set[str]:
    """The names of the tables and indexes in the SQLite file ``path`` (read-only)."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def outdated_tables_error(uri: str, owner: str, migrations: Sequence[Migration]) -> str:
    """The error line (``error: ...`` and a newline) a read-only command prints when the
    database ``uri`` names holds ``owner``'s tables at the last of ``migrations`` and the
    installed plugin ships one more: what :func:`flujo.testing.cli.run_flujo_after_upgrade`
    simulates. ``uri`` is an absolute ``sqlite:///`` URI (as ``flujo_state_uri`` gives) or a
    PostgreSQL DSN (named without its password)."""
    from flujo.state.dsn import redact_dsn

    where = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else redact_dsn(uri)
    current = max(m.version for m in migrations)
    return (
        f"error: the state database at {where} predates the installed {owner} "
        f"({owner} tables at v{current}, migrations v{current + 1} not applied); "
        "run `flujo state upgrade` to apply them\n"
    )
