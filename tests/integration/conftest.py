"""Fixtures shared by the integration tests."""

from __future__ import annotations

# A PostgreSQL with pgvector (FLUJO_TEST_PGVECTOR_DSN or a pgserver), as flujo-memory's own tests.
from flujo_memory.testing import pgvector_database, pgvector_dsn  # noqa: F401
