"""The audit table's migrations (SQLite and PostgreSQL) and its queries."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.state.sqlite import SQLiteBackend
from flujo_governance.audit import OWNER, TABLE, fetch_decisions, migrations


def test_migrations_per_dialect() -> None:
    sqlite, _ = migrations("sqlite")
    postgres, _ = migrations("postgresql")
    assert sqlite.owner == postgres.owner == OWNER == "flujo-governance"
    assert [m.version for m in migrations("sqlite")] == [1, 2]
    assert [m.version for m in migrations("postgresql")] == [1, 2]
    assert "AUTOINCREMENT" in sqlite.statements[0]
    assert "REAL" in sqlite.statements[0]
    assert "BIGSERIAL" in postgres.statements[0]
    assert "DOUBLE PRECISION" in postgres.statements[0]
    for statements in (sqlite.statements, postgres.statements):
        assert any(f"CREATE INDEX {TABLE}_run" in s for s in statements)


async def test_fetch_decisions_filters_and_decodes(tmp_path: Path) -> None:
    state = SQLiteBackend(tmp_path / "a.db")
    await state.open(migrations("sqlite"))
    try:
        for i, run in enumerate(["r1", "r2", "r1"]):
            await state.execute(
                f"INSERT INTO {TABLE} (run_id, step, policy, stage, tool, decision, rule, "
                "reason, entities, created_at) VALUES (:run, 's', 'pii', 'input', NULL, "
                "'redact', 'redact', NULL, :entities, :t)",
                {"run": run, "entities": json.dumps({"EMAIL": i + 1}), "t": float(i)},
            )
        rows = await fetch_decisions(state, run_id="r1")
        assert [r["entities"] for r in rows] == [{"EMAIL": 1}, {"EMAIL": 3}]
        assert len(await fetch_decisions(state)) == 3
        assert len(await fetch_decisions(state, limit=2)) == 2
    finally:
        await state.close()
