"""Commands that only read state never create it; `state migrate` needs a real source.

Both backends: a missing SQLite file and a PostgreSQL schema without flujo tables are the same
"no state database at ..." (exit 2), and a read-only backend cannot write even by mistake.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flujo import FlujoConfig
from flujo.config import StateSettings
from flujo.domain.errors import StateError, StateNotFoundError, StateOutdatedError
from flujo.domain.interfaces import Migration
from flujo.domain.models import RunRecord, RunStatus, Usage
from flujo.plugins.manager import PluginManager
from flujo.state import migrated, open_backend, open_state, state_where
from flujo.state.dsn import redact_dsn
from flujo.testing.cli import run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": ""}
PLUGIN_TABLE = Migration("flujo-acme", 1, ("CREATE TABLE acme_things (id TEXT PRIMARY KEY)",))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _config(uri: str, root: Path) -> FlujoConfig:
    return FlujoConfig(path=root / "flujo.toml", state=StateSettings(uri=uri))


async def _tables(uri: str, root: Path) -> set[str]:
    backend = open_backend(StateSettings(uri=uri), root)
    await backend.open(read_only=True)
    try:
        sql = (
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            if backend.dialect == "sqlite"
            else "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
        return {str(r["name"]) for r in await backend.fetch_all(sql)}
    finally:
        await backend.close()


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "list"],
        ["runs", "list", "--json"],
        ["runs", "show", "abc"],
        ["runs", "resume", "abc"],
        ["runs", "resume", "--stale"],
        ["state", "upgrade"],
    ],
)
def test_state_commands_in_an_empty_folder_create_nothing(tmp_path: Path, args: list[str]) -> None:
    proc = run_flujo(*args, cwd=tmp_path, env=ENV)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr == f"error: no state database at {tmp_path / '.flujo' / 'flujo.db'}\n"
    assert _files(tmp_path) == []


def test_migrate_from_a_missing_source_is_an_error_and_creates_neither_side(
    tmp_path: Path,
) -> None:
    proc = run_flujo(
        "state",
        "migrate",
        "--from",
        "sqlite:///.flujo/nope.db",
        "--to",
        "sqlite:///copy.db",
        cwd=tmp_path,
        env=ENV,
    )
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: no state database at {tmp_path / '.flujo' / 'nope.db'}\n",
    )
    assert "done" not in proc.stdout
    assert _files(tmp_path) == []


def test_migrate_reads_its_source_without_migrating_it(
    tmp_path: Path, flujo_postgres_uri: str
) -> None:
    """The source is opened read-only: a plugin installed here adds no table to it."""
    source = f"sqlite:///{tmp_path / 'src.db'}"

    async def seed() -> None:
        state = await open_state(_config(source, tmp_path))
        record = RunRecord(
            "r1", "p", "v1", None, RunStatus.RUNNING, "x", None, None, {}, Usage(), 0, 1.0, 1.0
        )
        await state.create_run(record, owner="w", lease_s=30)
        await state.close()

    asyncio.run(seed())
    before = asyncio.run(_tables(source, tmp_path))
    proc = run_flujo(
        "state", "migrate", "--from", source, "--to", flujo_postgres_uri, cwd=tmp_path, env=ENV
    )
    assert proc.returncode == 0, proc.stderr
    assert "workflow_state: 1 rows" in proc.stdout
    assert asyncio.run(_tables(source, tmp_path)) == before
    listed = run_flujo(
        "runs", "list", "--json", cwd=tmp_path, env={**ENV, "FLUJO_STATE_URI": flujo_postgres_uri}
    )
    assert listed.returncode == 0, listed.stderr
    assert '"run_id": "r1"' in listed.stdout


def test_a_postgres_schema_without_flujo_tables_is_no_state_database(
    tmp_path: Path, flujo_postgres_uri: str
) -> None:
    env = {**ENV, "FLUJO_STATE_URI": flujo_postgres_uri}
    for args in (["runs", "list"], ["runs", "show", "x"], ["runs", "resume", "--stale"]):
        proc = run_flujo(*args, cwd=tmp_path, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: no state database at postgresql://")
        assert "(no flujo tables in schema t_" in proc.stderr
    assert asyncio.run(_schema_tables(flujo_postgres_uri)) == set()


async def _schema_tables(uri: str) -> set[str]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(uri) as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {str(r[0]) for r in await cur.fetchall()}


def test_read_only_backends_refuse_writes_and_skip_plugin_migrations(
    tmp_path: Path, state_uri: str
) -> None:
    async def go() -> None:
        config = _config(state_uri, tmp_path)
        with pytest.raises(StateNotFoundError, match="no state database at"):
            await open_state(config, read_only=True)
        with pytest.raises(StateNotFoundError, match="no state database at"):
            await open_state(config, create=False)
        await (await open_state(config)).close()  # a runner would create it

        manager = PluginManager()
        config.plugin_manager = manager
        manager.pm.register(_AcmeTables(), name="flujo-acme")
        reader = await open_state(config, read_only=True)
        try:
            assert await reader.list_runs() == []
            assert not await migrated(reader, [PLUGIN_TABLE])
            with pytest.raises(StateError):
                await reader.execute("DELETE FROM workflow_state")
            with pytest.raises(StateError):
                await reader.execute("CREATE TABLE sneaky (x TEXT)")
        finally:
            await reader.close()
        writer = await open_state(config, create=False)
        try:
            assert await migrated(writer, [PLUGIN_TABLE])
        finally:
            await writer.close()

    asyncio.run(go())


def test_migrated_tells_never_created_from_current_from_outdated(
    tmp_path: Path, state_uri: str
) -> None:
    """A plugin's read path: tables never created is "nothing recorded" (False), all its
    migrations applied is "read" (True), some applied and newer ones pending (the plugin was
    upgraded since) is a one-line user error naming the database, plugin, versions and fix."""
    newer = Migration("flujo-acme", 2, ("CREATE TABLE acme_more (id TEXT)",))
    third = Migration("flujo-acme", 3, ("CREATE TABLE acme_most (id TEXT)",))

    async def go() -> None:
        config = _config(state_uri, tmp_path)
        manager = PluginManager()
        config.plugin_manager = manager
        manager.pm.register(_AcmeTables(), name="flujo-acme")
        await (await open_state(config)).close()
        reader = await open_state(config, read_only=True)
        try:
            where = state_where(reader)
            assert where == (
                str(tmp_path / "state.db")
                if state_uri.startswith("sqlite")
                else redact_dsn(state_uri)
            )
            assert await migrated(reader, [PLUGIN_TABLE])
            assert await migrated(reader, [])
            never = Migration("flujo-other", 1, ("CREATE TABLE other_things (id TEXT)",))
            assert not await migrated(reader, [never])
            with pytest.raises(StateOutdatedError) as raised:
                await migrated(reader, [PLUGIN_TABLE, newer, third])
            assert str(raised.value) == (
                f"the state database at {where} predates the installed flujo-acme (flujo-acme "
                "tables at v1, migrations v2, v3 not applied); run `flujo state upgrade` to "
                "apply them"
            )
            assert isinstance(raised.value, StateError)  # callers catching StateError still do
        finally:
            await reader.close()

    asyncio.run(go())


class _AcmeTables:
    def flujo_storage_migrations(self, dialect: str) -> list[Migration]:
        return [PLUGIN_TABLE]


def test_a_sqlite_file_that_is_not_a_flujo_database(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    env = {**ENV, "FLUJO_STATE_URI": f"sqlite:///{tmp_path / 'other.db'}"}
    proc = run_flujo("runs", "list", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: no state database at {tmp_path / 'other.db'} (the file holds no flujo tables)\n",
    )


def test_a_database_older_than_the_core_is_refused_read_only_until_upgraded(
    tmp_path: Path,
) -> None:
    """A database made by a flujo with only the first core migration: reads say what to do
    (and change nothing), `flujo state upgrade` applies the rest, then reads work."""
    import sqlite3

    from flujo.state.migrations import core_migrations

    first, *later = core_migrations("sqlite")
    assert later, "this test needs a core migration after the first"
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE flujo_migrations (owner TEXT NOT NULL, version INTEGER NOT NULL, "
        "applied_at REAL NOT NULL, PRIMARY KEY (owner, version))"
    )
    for statement in first.statements:
        conn.execute(statement)
    conn.execute("INSERT INTO flujo_migrations VALUES ('flujo', 1, 0)")
    conn.commit()
    conn.close()
    env = {**ENV, "FLUJO_STATE_URI": f"sqlite:///{path}"}
    before = path.read_bytes()
    proc = run_flujo("runs", "list", cwd=tmp_path, env=env)
    assert proc.returncode == 2  # a user error: the user runs `flujo state upgrade`
    versions = ", ".join(f"v{m.version}" for m in later)
    assert f"predates this flujo (core migrations {versions} not applied)" in proc.stderr
    assert "flujo state upgrade" in proc.stderr
    assert path.read_bytes() == before
    upgraded = run_flujo("state", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    listed = run_flujo("runs", "list", cwd=tmp_path, env=env)
    assert (listed.returncode, listed.stdout) == (0, "no runs\n"), listed.stderr


def test_state_upgrade_applies_a_new_plugins_tables(tmp_path: Path, make_dist: Any) -> None:
    make_dist(
        "flujo-acme",
        "flujo_acme",
        """
        from flujo.domain.interfaces import Migration

        def flujo_storage_migrations(dialect):
            return [Migration("flujo-acme", 1, ("CREATE TABLE acme_things (id TEXT)",))]
        """,
    )
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///state.db"\n')
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    asyncio.run(_create(uri, tmp_path))
    assert "acme_things" not in asyncio.run(_tables(uri, tmp_path))
    env = {"FLUJO_LOAD_PLUGINS": "flujo-acme"}
    listed = run_flujo("runs", "list", cwd=tmp_path, env=env)
    assert (listed.returncode, listed.stdout) == (0, "no runs\n"), listed.stderr
    assert "acme_things" not in asyncio.run(_tables(uri, tmp_path))
    upgraded = run_flujo("state", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "acme_things" in asyncio.run(_tables(uri, tmp_path))


async def _create(uri: str, root: Path) -> None:
    await (await open_state(_config(uri, root))).close()
