"""State helpers for tests: a database as an older install left it, and what it holds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path


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
