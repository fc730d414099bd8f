"""The outbox table: memories waiting to be embedded and indexed, in the state database.

A row is written when an indexed step succeeds and deleted once its memory is in the store,
so a crash or a failing embedder loses nothing: the next runner (or ``flush()``) picks the
rows up again. Row ids are the memory ids (a hash of run, step and text), so indexing the same
row twice writes the same memory once.

Several processes may share one state database (workers): a batch is *claimed* first (its
``next_attempt_at`` is pushed past the claim's deadline under a unique ``claimed_by`` token),
so two workers do not embed the same rows, and a worker that dies mid-batch only delays them
until the claim expires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from flujo.domain.interfaces import Migration

OWNER = "flujo-memory"
TABLE = "flujo_memory_outbox"

PENDING = "pending"
FAILED = "failed"


def migrations(dialect: str) -> Sequence[Migration]:
    """The outbox table for ``dialect`` (``sqlite`` or ``postgresql``)."""
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    return [
        Migration(
            OWNER,
            1,
            (
                f"CREATE TABLE {TABLE} ("
                "id TEXT PRIMARY KEY, "
                "run_id TEXT, "
                "step_name TEXT, "
                "scope TEXT NOT NULL, "
                "scope_values TEXT NOT NULL, "
                "text TEXT NOT NULL, "
                "metadata TEXT NOT NULL, "
                f"created_at {real} NOT NULL, "
                "status TEXT NOT NULL DEFAULT 'pending', "
                "attempts INTEGER NOT NULL DEFAULT 0, "
                f"next_attempt_at {real} NOT NULL DEFAULT 0, "
                "last_error TEXT, "
                "claimed_by TEXT)",
                f"CREATE INDEX {TABLE}_due ON {TABLE} (status, next_attempt_at)",
                f"CREATE INDEX {TABLE}_run ON {TABLE} (run_id)",
            ),
        )
    ]


INSERT = (
    f"INSERT INTO {TABLE} (id, run_id, step_name, scope, scope_values, text, metadata, "
    "created_at) VALUES (:id, :run_id, :step_name, :scope, :scope_values, :text, :metadata, "
    ":created_at) ON CONFLICT (id) DO NOTHING"
)


def memory_id(run_id: str | None, step_name: str | None, text: str) -> str:
    """The idempotent id of a memory: a hash of its run, step and text."""
    h = hashlib.sha256()
    for part in (run_id or "", step_name or "", text):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def in_clause(column: str, values: Sequence[Any], prefix: str = "p") -> tuple[str, dict[str, Any]]:
    """``column IN (:p0, :p1, ...)`` and its parameters (``1 = 0`` when ``values`` is empty)."""
    if not values:
        return "1 = 0", {}
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return f"{column} IN ({', '.join(':' + k for k in params)})", params
