"""Shared fixtures for flujo-core's tests."""

from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from flujo import FlujoConfig
from flujo.domain.interfaces import StateBackend
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend


@pytest.fixture
def state(tmp_path: Path) -> SQLiteBackend:
    """A SQLite state backend in a temporary folder (the runner opens it)."""
    return SQLiteBackend(tmp_path / "state" / "flujo.db")


@pytest.fixture
def config() -> FlujoConfig:
    """Defaults, with an empty plugin manager: no installed plugin leaks into a test."""
    return FlujoConfig(plugin_manager=PluginManager())


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path (and PYTHONPATH, for subprocesses) to install fake dists into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), *sys.path]))
    return folder


@pytest.fixture
def make_dist(site: Path) -> Callable[..., Path]:
    """Install a fake distribution with a ``flujo.plugins`` entry point into ``site``.

    ``make_dist("flujo-x", "flujo_x", "<module source>")`` writes ``flujo_x.py`` and a
    ``flujo_x-1.0.dist-info`` that importlib.metadata finds, as pip would.
    """

    def make(dist: str, module: str, source: str, version: str = "1.0") -> Path:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[flujo.plugins]\n{module} = {module}\n")
        return site / f"{module}.py"

    return make


@pytest.fixture
def state_uri(flujo_state_uri: str) -> str:
    """The state database URI for each backend: the suite runs against both (the pytest
    plugin's ``flujo_state_uri``, by this suite's shorter name)."""
    return flujo_state_uri


class CommitLedger:
    """Database triggers that record every commit to ``step_results`` and every run
    finalization, in the writer's own transaction (a rolled-back write leaves no entry).

    Counting executions cannot show a double commit: ``INSERT OR REPLACE`` hides a duplicate
    step row. The ledger counts the writes themselves.
    """

    _SQLITE = (
        "CREATE TABLE test_commits (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
        "run_id TEXT NOT NULL, idx INTEGER, status TEXT NOT NULL)",
        "CREATE TRIGGER test_commit_step_ins AFTER INSERT ON step_results BEGIN "
        "INSERT INTO test_commits (kind, run_id, idx, status) "
        "VALUES ('step', NEW.run_id, NEW.idx, NEW.status); END",
        "CREATE TRIGGER test_commit_step_upd AFTER UPDATE ON step_results BEGIN "
        "INSERT INTO test_commits (kind, run_id, idx, status) "
        "VALUES ('step', NEW.run_id, NEW.idx, NEW.status); END",
        "CREATE TRIGGER test_commit_final AFTER UPDATE OF status ON workflow_state "
        "WHEN NEW.status != 'running' BEGIN "
        "INSERT INTO test_commits (kind, run_id, idx, status) "
        "VALUES ('final', NEW.run_id, NULL, NEW.status); END",
    )
    _POSTGRES = (
        "CREATE TABLE test_commits (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, "
        "run_id TEXT NOT NULL, idx INTEGER, status TEXT NOT NULL)",
        "CREATE FUNCTION test_commit_step() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
        "INSERT INTO test_commits (kind, run_id, idx, status) "
        "VALUES ('step', NEW.run_id, NEW.idx, NEW.status); RETURN NEW; END $f$",
        "CREATE TRIGGER test_commit_step AFTER INSERT OR UPDATE ON step_results "
        "FOR EACH ROW EXECUTE FUNCTION test_commit_step()",
        "CREATE FUNCTION test_commit_final() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
        "INSERT INTO test_commits (kind, run_id, idx, status) "
        "VALUES ('final', NEW.run_id, NULL, NEW.status); RETURN NEW; END $f$",
        "CREATE TRIGGER test_commit_final AFTER UPDATE OF status ON workflow_state "
        "FOR EACH ROW WHEN (NEW.status <> 'running') EXECUTE FUNCTION test_commit_final()",
    )

    @classmethod
    async def install(cls, state: StateBackend) -> None:
        """Create the ledger table and triggers in ``state`` (open, core tables migrated)."""
        for statement in cls._SQLITE if state.dialect == "sqlite" else cls._POSTGRES:
            await state.execute(statement)

    @staticmethod
    async def steps(state: StateBackend) -> Counter[tuple[str, int]]:
        """How many times each ``(run_id, idx)`` step row was committed."""
        rows = await state.fetch_all("SELECT run_id, idx FROM test_commits WHERE kind = 'step'")
        return Counter((str(r["run_id"]), int(r["idx"])) for r in rows)

    @staticmethod
    async def finals(state: StateBackend) -> Counter[tuple[str, str]]:
        """How many times each run was finalized with each status."""
        rows = await state.fetch_all("SELECT run_id, status FROM test_commits WHERE kind = 'final'")
        return Counter((str(r["run_id"]), str(r["status"])) for r in rows)


@pytest.fixture
def commit_ledger() -> type[CommitLedger]:
    """:class:`CommitLedger`: count commits, not executions."""
    return CommitLedger
