"""Copying execution state between backends (``flujo state migrate``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flujo.domain.errors import UserError
from flujo.domain.interfaces import StateBackend

# Parents before children: step_results references workflow_state.
_CORE_TABLES = ("workflow_state", "step_results", "inner_step_results")
_BATCH = 500


@dataclass
class TransferReport:
    """Rows copied per table, and source tables the destination has no table for."""

    copied: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


async def _tables(backend: StateBackend) -> list[str]:
    if backend.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    return sorted(str(row["name"]) for row in await backend.fetch_all(sql))


async def _columns(backend: StateBackend, table: str) -> list[str]:
    rows = await backend.fetch_all(f"SELECT * FROM {table} LIMIT 0")
    if rows:  # pragma: no cover - LIMIT 0 returns nothing
        return list(rows[0])
    if backend.dialect == "sqlite":
        info = await backend.fetch_all(f"PRAGMA table_info({table})")
        return [str(r["name"]) for r in info]
    info = await backend.fetch_all(
        "SELECT column_name AS name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = :t ORDER BY ordinal_position",
        {"t": table},
    )
    return [str(r["name"]) for r in info]


async def copy_state(
    source: StateBackend,
    dest: StateBackend,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> TransferReport:
    """Copy every run, step result and plugin table row from ``source`` to ``dest``.

    Both must be open, ``dest`` with the migrations of every plugin whose tables should come
    along. A destination that already holds runs is refused: merging two histories is not a
    copy. Tables only the source has (a plugin not installed here) are reported as skipped.
    """
    if await dest.fetch_all("SELECT run_id FROM workflow_state LIMIT 1"):
        raise UserError("the destination already holds runs; migrate into an empty database")
    source_tables = await _tables(source)
    dest_tables = set(await _tables(dest))
    ordered = [t for t in _CORE_TABLES if t in source_tables] + [
        t for t in source_tables if t not in _CORE_TABLES and t != "flujo_migrations"
    ]
    report = TransferReport()
    for table in ordered:
        if table not in dest_tables:
            report.skipped.append(table)
            continue
        wanted = await _columns(dest, table)
        present = set(await _columns(source, table))
        columns = [c for c in wanted if c in present]
        names = ", ".join(columns)
        insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in columns)})"
        copied, offset = 0, 0
        while True:
            rows = await source.fetch_all(
                f"SELECT {names} FROM {table} ORDER BY {columns[0]} LIMIT :n OFFSET :o",
                {"n": _BATCH, "o": offset},
            )
            for row in rows:
                await dest.execute(insert, row)
            copied += len(rows)
            offset += _BATCH
            if progress is not None:
                progress(table, copied)
            if len(rows) < _BATCH:
                break
        report.copied[table] = copied
    return report
