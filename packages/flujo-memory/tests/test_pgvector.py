"""The ``pgvector`` store against a real PostgreSQL with pgvector.

The server is ``FLUJO_TEST_PGVECTOR_DSN`` when set, else one ``pgserver`` starts for the session
(:mod:`flujo_memory.testing`). Without either the tests skip locally and fail in CI
(``CI=true``). Every test works in its own collection (table).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from memtest_pipelines import TenantContext, learn_and_recall, recall_only

from flujo import Flujo, RunStatus
from flujo.config import load_config
from flujo.domain.errors import ConfigError
from flujo.domain.interfaces import Memory, ScoredMemory
from flujo.testing.conformance import VectorStoreConformance
from flujo_memory import outbox
from flujo_memory.errors import PgVectorExtensionError, StoreUnavailableError
from flujo_memory.service import MemoryService

psycopg = pytest.importorskip("psycopg", reason="pip install 'flujo-memory[pgvector]'")

from flujo_memory.stores.pgvector import (  # noqa: E402 - after the importorskip
    REGISTRY,
    PgVectorStore,
    redact_dsn,
    table_name,
    where_clause,
)


def fresh_collection() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pg_store(pgvector_dsn: str) -> AsyncIterator[PgVectorStore]:
    store = PgVectorStore(pgvector_dsn, fresh_collection())
    yield store
    await store.reset()
    await store.close()


class TestPgVectorStore(VectorStoreConformance):
    @pytest.fixture
    def store(self, pg_store: PgVectorStore) -> PgVectorStore:
        return pg_store


def unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


async def test_scoped_query_returns_exactly_the_k_nearest_of_its_scope(
    pg_store: PgVectorStore,
) -> None:
    """1,000 memories in 50 scopes: a query in one scope gets that scope's exact top k, even
    though the scope holds 2% of the table (an index scan filtered afterwards would not)."""
    rng = np.random.default_rng(11)
    vectors = unit(rng.normal(size=(1000, 32)).astype(np.float32))
    await pg_store.add(
        [
            Memory(
                id=f"m{i}",
                text=f"memory {i}",
                vector=vectors[i].tolist(),
                scope=f"scope-{i % 50}",
                metadata={"i": i},
            )
            for i in range(1000)
        ]
    )
    assert await pg_store.count() == 1000
    for s in (0, 17, 49):
        query = unit(rng.normal(size=(1, 32)).astype(np.float32))[0]
        members = np.arange(s, 1000, 50)
        order = members[np.argsort(-(vectors[members] @ query))]
        for k in (10, 20, 25):
            hits = await pg_store.search(query.tolist(), k, filter={"scope": f"scope-{s}"})
            expected = [f"m{i}" for i in order[:k]]
            assert [h.memory.id for h in hits] == expected, (s, k)
            assert all(h.memory.scope == f"scope-{s}" for h in hits)
    # Unfiltered: the HNSW index (ef_search raised to the limit), or exact past 1,000.
    assert pg_store.search_mode(False, 50) == "hnsw"
    assert len(await pg_store.search(vectors[0].tolist(), 50)) == 50
    everything = await pg_store.search(vectors[0].tolist(), 1001)
    assert len(everything) == 1000
    assert everything[0].memory.id == "m0"
    described = await pg_store.describe()
    assert described["pgvector"]
    assert described["table"] == pg_store.table
    if pg_store.iterative:
        assert described["filtered_search"].startswith("iterative index scan")
    else:
        assert described["filtered_search"].startswith("exact scan")


async def test_collection_table_records_embedder_and_dimension(
    pg_store: PgVectorStore, pgvector_dsn: str
) -> None:
    assert await pg_store.get_info() is None
    await pg_store.set_info({"embedder": "hashing:v1:4", "dimension": 4})
    assert await pg_store.get_info() == {
        "embedder": "hashing:v1:4",
        "dimension": 4,
        "lexical": "bm25:v1",
    }
    async with await psycopg.AsyncConnection.connect(pgvector_dsn) as conn:
        cur = await conn.execute(
            f"SELECT table_name, dimension, embedder, hnsw FROM {REGISTRY} WHERE name = %s",
            (pg_store.collection,),
        )
        assert await cur.fetchone() == (pg_store.table, 4, "hashing:v1:4", True)
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (pg_store.table,)
        )
        indexes = " ".join(r[0] for r in await cur.fetchall())
        cur = await conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename = %s", (pg_store.table + "_terms",)
        )
        assert await cur.fetchone() == (1,)  # the lexical index's table
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes
    # A second store on the same collection (another process) sees the record.
    other = PgVectorStore(pgvector_dsn, pg_store.collection)
    assert await other.get_info() == await pg_store.get_info()
    await other.close()


async def test_over_2000_dimensions_has_no_hnsw_index_and_searches_exactly(
    pg_store: PgVectorStore,
) -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(30, 2048)).astype(np.float32))
    await pg_store.add(
        [
            Memory(id=f"w{i}", text="wide", vector=v.tolist(), scope="s")
            for i, v in enumerate(vectors)
        ]
    )
    assert pg_store.search_mode(False, 5) == "exact"
    assert "no HNSW index" in (await pg_store.describe())["filtered_search"]
    hits = await pg_store.search(vectors[7].tolist(), 3, filter={"scope": "s"})
    assert hits[0].memory.id == "w7"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_stats_on_the_command_line(
    tmp_path: Path, config_file: Callable[..., Path], pgvector_dsn: str
) -> None:
    """``flujo memory stats`` names the server (no password) and the filtered-search mode."""
    pg_config(config_file, pgvector_dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    proc = subprocess.run(
        [sys.executable, "-m", "flujo", "memory", "stats"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["store"] == "pgvector"
    assert lines["filtered_search"].startswith(("exact scan", "iterative index scan"))
    assert lines["pgvector"]
    assert lines["memories"] == "0"


def test_table_names_and_filters_are_safe() -> None:
    assert table_name("flujo") == "flujo_mem_flujo"
    assert table_name("Bot") != table_name("bot")
    assert all(len(table_name(c * 64)) <= 52 for c in "aZ-")
    sql, params = where_clause({"scope": "s", "run_id": 3, "page": 2}, ids=["x"])
    assert sql == "scope = %(f_scope)s AND FALSE AND tags @> %(f_tags)s::text[] AND " + (
        "id = ANY(%(f_ids)s::text[])"
    )
    assert params["f_tags"] != where_clause({"page": "2"})[1]["f_tags"]
    assert redact_dsn("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact_dsn("postgresql://u@h/db?password=secret") == "postgresql://u@h/db?password=***"


async def test_iterative_scan_on_new_servers_and_exact_fallback() -> None:
    """pgvector >= 0.8 filters during the index scan; if it stops short, exact settles it."""
    store = PgVectorStore("postgresql://nobody@127.0.0.1:9/x", "c")
    store._hnsw, store._dimension = True, 2
    store.version = (0, 6, 2)
    assert store.search_mode(True, 10) == "exact"
    assert store.search_mode(False, 10) == "hnsw"
    assert store.search_mode(False, 5000) == "exact"
    store.version = (0, 8, 0)
    assert store.search_mode(True, 10) == "iterative"
    settings, query = store.search_sql("iterative", "scope = %(f_scope)s", 10)
    assert settings == [
        "SET LOCAL hnsw.ef_search = 200",
        "SET LOCAL hnsw.iterative_scan = relaxed_order",
    ]
    assert "WHERE scope = %(f_scope)s ORDER BY embedding <=> %(q)s LIMIT %(k)s" in query
    assert store.search_sql("exact", "TRUE", 10)[0] == ["SET LOCAL enable_indexscan = off"]
    calls: list[str] = []

    async def fake_query(mode: str, *args: Any) -> list[ScoredMemory]:
        calls.append(mode)
        n = 1 if mode == "iterative" else 3
        return [ScoredMemory(Memory(id=str(i), text=""), 1.0 - i) for i in range(n)]

    store._query = fake_query  # type: ignore[method-assign,assignment]
    found = await store.search([1.0, 0.0], 3, filter={"scope": "s"})
    assert calls == ["iterative", "exact"]
    assert len(found) == 3


async def test_missing_extension_is_a_clear_error(pgvector_dsn: str) -> None:
    """A server without pgvector: ``FLUJO_TEST_POSTGRES_DSN`` (CI's Debian PostgreSQL)."""
    dsn = os.environ.get("FLUJO_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("no PostgreSQL without pgvector: set FLUJO_TEST_POSTGRES_DSN (.ci/run does)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    if available is not None:
        pytest.skip("the server at FLUJO_TEST_POSTGRES_DSN has pgvector: nothing is missing")
    store = PgVectorStore(dsn, "never")
    with pytest.raises(PgVectorExtensionError, match="has no pgvector extension") as info:
        await store.search([1.0, 0.0], 1)
    assert len(str(info.value).splitlines()) == 1
    await store.close()


async def test_role_that_may_not_create_the_extension(pgvector_dsn: str) -> None:
    """pgvector is installed but not created in the database, and the role is no superuser."""
    suffix = uuid.uuid4().hex[:8]
    database, role = f"noext_{suffix}", f"plain_{suffix}"
    with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
    try:
        dsn = psycopg.conninfo.make_conninfo(pgvector_dsn, dbname=database, user=role)
        with psycopg.connect(dsn) as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                pytest.skip("template1 of this server already has pgvector")
        store = PgVectorStore(dsn, "never")
        with pytest.raises(PgVectorExtensionError, match="may not create the extension"):
            await store.get_info()
        await store.close()
    finally:
        with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


async def test_unreachable_server_is_a_clear_error() -> None:
    store = PgVectorStore("postgresql://flujo:pw@127.0.0.1:9/db", "c", connect_timeout_s=2)
    with pytest.raises(StoreUnavailableError, match=r"cannot use PostgreSQL at .*:\*\*\*@"):
        await store.count()
    await store.close()


def test_config_requires_a_postgresql_dsn(config_file: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"key 'dsn'.*needs dsn"):
        load_config(config_file(store="pgvector"))
    with pytest.raises(ConfigError, match=r"key 'dsn'.*postgresql://"):
        load_config(config_file(store="pgvector", dsn="mysql://x"))
    cfg = load_config(config_file(store="pgvector", dsn="postgresql://u@h/db"))
    assert cfg.section("memory", type(cfg.sections["memory"])).dsn == "postgresql://u@h/db"


def pg_config(make: Callable[..., Path], dsn: str, **memory: Any) -> Path:
    return make(store="pgvector", dsn=dsn, collection=fresh_collection(), **memory)


@pytest.fixture
def state_on_the_same_server(pgvector_dsn: str) -> Iterator[str]:
    """A state-database URI on the pgvector server, in a fresh schema (dropped afterwards)."""
    schema = f"state_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pgvector_dsn else "?"
    yield f"{pgvector_dsn}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_pipeline_run_two_recalls_run_one(
    tmp_path: Path,
    config_file: Callable[..., Path],
    pgvector_dsn: str,
    state_on_the_same_server: str,
) -> None:
    """End to end with the state database on the same PostgreSQL: separate tables."""
    cfg = pg_config(config_file, pgvector_dsn, index_steps=["learn"])
    text = cfg.read_text().replace(
        'uri = "sqlite:///.flujo/flujo.db"', f'uri = "{state_on_the_same_server}"'
    )
    cfg.write_text(text)
    async with Flujo(learn_and_recall, config=cfg) as runner:
        first = await runner.run_async("the build cache lives on the nfs share")
        assert first.status is RunStatus.SUCCEEDED, first.error
        assert first.output == []
    # A new runner: the memory is in PostgreSQL, the outbox was flushed on close.
    async with Flujo(recall_only, config=cfg) as runner:
        second = await runner.run_async("fact: build cache")
        service: MemoryService = runner.services["memory"]
        stats = await service.stats()
        store = service.get_store()
        async with await psycopg.AsyncConnection.connect(pgvector_dsn) as conn:
            cur = await conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_name IN (%s, 'workflow_state', 'flujo_memory_outbox')",
                (store.table,),
            )
            tables = {name: schema for schema, name in await cur.fetchall()}
        await store.reset()
    state_schema = state_on_the_same_server.rsplit("%3D", 1)[1]
    assert tables["workflow_state"] == tables["flujo_memory_outbox"] == state_schema
    assert tables[store.table] != state_schema  # memories stay out of execution state
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.output == ["fact: the build cache lives on the nfs share"]
    assert stats["store"] == "pgvector"
    assert stats["memories"] == 1
    assert stats["recorded_embedder"] == "wordllama:l2_supercat:256"
    assert stats["dimension"] == 256
    assert "***" in stats["location"] or "@" not in stats["location"]
    assert "scan" in stats["filtered_search"]


async def test_forget_by_scope_run_and_ids_returns_counts(
    config_file: Callable[..., Path], pgvector_dsn: str
) -> None:
    cfg = pg_config(
        config_file, pgvector_dsn, index_steps=["learn"], scope_fields=["tenant", "user"]
    )
    ana = {"tenant": "acme", "user": "ana"}
    async with Flujo(learn_and_recall, config=cfg, context_model=TenantContext) as runner:
        a1 = await runner.run_async("ana likes tea", context=ana)
        service: MemoryService = runner.services["memory"]
        await runner.run_async("ana likes jazz", context=ana)
        await runner.run_async("bo likes tea", context={"tenant": "acme", "user": "bo"})
        await runner.run_async("cy likes tea", context={"tenant": "globex", "user": "cy"})
        await service.flush()
        assert len(await service.search("likes", scope=ana, filter={"step_index": 0})) == 2
        assert await service.search("likes", scope=ana, filter={"step_index": "0"}) == []
        added = await service.add("ana is vegetarian", scope=ana, metadata={"source": "cli"})
        again = await service.add("ana is vegetarian", scope=ana, metadata={"source": "cli"})
        assert again.id == added.id  # idempotent upsert on the memory id
        assert await service.get_store().count() == 5

        by_run = await service.forget(run_id=a1.run_id)
        assert (by_run.store, by_run.outbox) == (1, 0)
        by_id = await service.forget(ids=[added.id, "no-such-id"])
        assert (by_id.store, by_id.outbox) == (1, 0)
        # One more acme memory still queued in the outbox (not indexed yet).
        await runner.runtime.state.execute(
            outbox.INSERT,
            {
                "id": "queued-1",
                "run_id": "r",
                "step_name": "learn",
                "scope": service.scope_of({"tenant": "acme", "user": "bo"})[0],
                "scope_values": '{"tenant": "acme", "user": "bo"}',
                "text": "bo likes chess",
                "metadata": "{}",
                "created_at": 1.0,
            },
        )
        gone = await service.forget(scope={"tenant": "acme"})
        assert (gone.store, gone.outbox) == (2, 1)
        assert await service.search("likes", scope=ana) == []
        left = await service.search("likes", scope={"tenant": "globex", "user": "cy"})
        assert [h.memory.text for h in left] == ["fact: cy likes tea"]
        await service.get_store().reset()
