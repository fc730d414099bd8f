"""Listing and counting the runs of one pipeline (``flujo runs list --pipeline``, the web UI's
pipeline filter) is answered from an index, not by reading every run; a database made before
that index gets it from ``flujo state upgrade``, its runs intact. Both backends, real SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flujo.state._listing import RunFilter, count_sql, list_sql
from flujo.state._sql import DIALECTS, Statements
from flujo.state.migrations import CORE_OWNER, core_migrations
from flujo.testing.cli import run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": ""}
INDEX = "workflow_state_pipeline"
# The last core migration before the index (v4: the run's engine).
BEFORE = 4


def _connect(uri: str, root: Path) -> Any:
    if uri.startswith("sqlite"):
        import sqlite3

        return sqlite3.connect(uri.removeprefix("sqlite:///"))
    import psycopg

    return psycopg.connect(uri, autocommit=True)


def _old_database(uri: str, root: Path) -> None:
    """The core tables as flujo left them at migration ``BEFORE``, holding two runs."""
    dialect = "sqlite" if uri.startswith("sqlite") else "postgresql"
    mark = DIALECTS[dialect].param
    conn = _connect(uri, root)
    try:
        conn.execute(Statements(DIALECTS[dialect]).migrations_table)
        for migration in core_migrations(dialect):
            if migration.version > BEFORE:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO flujo_migrations VALUES ({mark}, {mark}, 0)",
                (CORE_OWNER, migration.version),
            )
        for i, name in enumerate(["refunds", "triage"]):
            conn.execute(
                "INSERT INTO workflow_state (run_id, pipeline_name, pipeline_version, status, "
                f"context, usage, created_at, updated_at) VALUES ({mark}, {mark}, 'v', "
                f"'succeeded', '{{}}', '{{}}', {mark}, {mark})",
                (f"{i:032x}", name, 1000.0 + i, 1000.0 + i),
            )
        conn.commit()
    finally:
        conn.close()


def _indexes(uri: str, root: Path) -> dict[str, str]:
    """Every index on ``workflow_state``: its name and definition."""
    conn = _connect(uri, root)
    try:
        if uri.startswith("sqlite"):
            sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            rows = conn.execute(sql, ("workflow_state",)).fetchall()
        else:
            sql = (
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = %s"
            )
            rows = conn.execute(sql, ("workflow_state",)).fetchall()
        return {str(name): str(definition) for name, definition in rows}
    finally:
        conn.close()


def _plans(uri: str, root: Path) -> list[str]:
    """The query plans of a listing and a count of one pipeline's runs (PostgreSQL told not to
    scan the table when it has a choice: two rows would always be read that way)."""
    where = RunFilter(pipeline="refunds")
    statements = [
        list_sql("run_id", where, None, 50),
        list_sql("run_id", RunFilter(pipeline="refunds", created_after=1000.0), None, 50),
        count_sql(where, by_pipeline=False),
    ]
    conn = _connect(uri, root)
    plans = []
    try:
        for sql, params in statements:
            if uri.startswith("sqlite"):
                rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
                plans.append(" | ".join(str(r[-1]) for r in rows))
            else:
                from flujo.state._sql import translate_params

                conn.execute("SET enable_seqscan = off")
                rows = conn.execute(f"EXPLAIN {translate_params(sql)}", params).fetchall()
                plans.append(" | ".join(str(r[0]) for r in rows))
    finally:
        conn.close()
    return plans


def test_an_old_database_gets_the_pipeline_index_on_upgrade(tmp_path: Path, state_uri: str) -> None:
    _old_database(state_uri, tmp_path)
    assert INDEX not in _indexes(state_uri, tmp_path)
    env = {**ENV, "FLUJO_STATE_URI": state_uri}

    upgraded = run_flujo("state", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr

    indexes = _indexes(state_uri, tmp_path)
    assert "(pipeline_name, created_at, status)" in indexes[INDEX], indexes
    assert "(pipeline_name, status, created_at)" in indexes[f"{INDEX}_status"], indexes
    for plan in _plans(state_uri, tmp_path):
        assert INDEX in plan, plan
    listed = run_flujo("runs", "list", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert {(r["run_id"], r["pipeline"]) for r in json.loads(listed.stdout)} == {
        (f"{0:032x}", "refunds"),
        (f"{1:032x}", "triage"),
    }
