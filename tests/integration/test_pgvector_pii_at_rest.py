"""No PII at rest in the ``pgvector`` memory store, with flujo-governance's ``pii`` policy.

Memories are read back twice: through the store itself (every memory it holds, every field),
and as every row of every table of the test's own database (``row_to_json``: PostgreSQL
decompresses TOASTed values itself, so a value compressed or moved out of line is read as
text, never guessed from raw bytes). The PII is non-ASCII, and sits past values long enough to
be TOASTed both ways (compressed inline, and stored out of line); runs are resumed, in
``redact`` and ``pseudonymize`` modes, with the state database in SQLite and in the same
PostgreSQL. The server is ``FLUJO_TEST_PGVECTOR_DSN`` or a pgserver (see
:mod:`flujo_memory.testing`); CI's own PostgreSQL has no pgvector.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, Pipeline, PipelineContext, RunStatus, Step
from flujo.config import load_config
from flujo.state import open_state
from flujo_memory.service import MemoryService

psycopg = pytest.importorskip("psycopg", reason="pip install 'flujo-memory[pgvector]'")

EMAIL = "ñandú.pérez@example.com"
BOB = "bjørn.ødegård@example.org"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
NEEDLES = [EMAIL, BOB, CARD, "4111111111111111", IBAN, "DE89370400440532013000"]
# Compresses to almost nothing: TOASTed inline, compressed.
COMPRESSIBLE = "é" * 4000
# Random letters from several scripts (18 KB of UTF-8) do not compress: stored out of line.
_RNG = random.Random(25)
INCOMPRESSIBLE = "".join(
    chr(_RNG.choice([0x0400, 0x3040, 0x4E00, 0x00C0]) + _RNG.randrange(64)) for _ in range(6000)
)


class Customer(PipelineContext):
    tenant: str = ""
    user: str = ""


def learn(text: str, context: Customer) -> str:
    return f"{text}: {COMPRESSIBLE} write to {context.user}, card {CARD}"


class Flaky:
    """Fails the first time in each run, so the run stops and is resumed; then
    remembers a long text."""

    def __init__(self) -> None:
        self.failed: set[str] = set()

    def __call__(self, fact: str, context: Customer) -> str:
        if context.run_id not in self.failed:
            self.failed.add(context.run_id)
            raise RuntimeError("transient")
        return f"later: {INCOMPRESSIBLE} iban {IBAN} for {context.user}"


def _config(root: Path, state_uri: str, memory_dsn: str, mode: str) -> Path:
    path = root / "flujo.toml"
    path.write_text(
        f"[state]\nuri = {json.dumps(state_uri)}\n"
        f'[governance]\npolicies = ["pii"]\n[governance.pii]\nmode = "{mode}"\n'
        f'[memory]\nstore = "pgvector"\ndsn = {json.dumps(memory_dsn)}\nembedder = "hashing"\n'
        'index_steps = ["learn", "later"]\nscope_fields = ["tenant", "user"]\n'
        "max_text_chars = 20000\n",
        encoding="utf-8",
    )
    return path


def _assert_clean(where: str, text: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} stored in {where}"


async def _every_row(uri: str) -> dict[str, str]:
    """Every row of every table of the database at ``uri``, as JSON text, by table."""
    found: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(uri) as conn:
        tables = await (
            await conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
                "AND table_type = 'BASE TABLE'"
            )
        ).fetchall()
        for schema, table in tables:
            rows = await (
                await conn.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t')
            ).fetchall()
            found[f"{schema}.{table}"] = "\n".join(row[0] for row in rows)
    return found


async def _toasted(uri: str, table: str) -> tuple[int, int]:
    """How many ``text`` values of ``table`` are stored compressed, and how many chunks its
    TOAST table holds (values stored out of line)."""
    async with await psycopg.AsyncConnection.connect(uri) as conn:
        [(compressed,)] = await (
            await conn.execute(
                f"SELECT count(*) FROM {table} WHERE pg_column_size(text) < octet_length(text)"
            )
        ).fetchall()
        [(toast,)] = await (
            await conn.execute(
                "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = %s::regclass",
                (table,),
            )
        ).fetchall()
        [(chunks,)] = await (await conn.execute(f"SELECT count(*) FROM {toast}")).fetchall()
    return int(compressed), int(chunks)


@pytest.fixture(params=["sqlite", "postgres"])
def state_uri(request: pytest.FixtureRequest, pgvector_database: str) -> str:
    """The state database: SQLite, or the test's pgvector database (its rows scanned too)."""
    return "sqlite:///.flujo/flujo.db" if request.param == "sqlite" else pgvector_database


async def _resumed_runs(config: Path, *customers: str) -> tuple[list[Any], list[Any], str]:
    """One run per customer, each failing at ``later`` and then resumed by a new runner;
    the results, every memory the store then holds, and the store's table."""
    pipeline = Pipeline(
        [Step.from_callable(learn, name="learn"), Step.from_callable(Flaky(), name="later")]
    )
    failed = []
    async with Flujo(pipeline, config=load_config(config), context_model=Customer) as runner:
        for user in customers:
            result = await runner.run_async("note", context={"tenant": "acme", "user": user})
            assert result.status is RunStatus.FAILED, result.error
            failed.append(result)
    resumed = []
    async with Flujo(pipeline, config=load_config(config), context_model=Customer) as runner:
        for result in failed:
            resumed.append(await runner.resume_async(result.run_id))
    # A new service indexes what the runner left queued: with the state in PostgreSQL the
    # last step's outbox row is written by a background task that may land after the close's
    # flush (reported separately); what is checked here is what the store holds.
    loaded = load_config(config)
    state = await open_state(loaded)
    registry = loaded.plugin_manager.registry if loaded.plugin_manager else None
    service = MemoryService(loaded, state, registry=registry)
    try:
        await service.flush()
        store = service.get_store()
        memories = await store.scan()
    finally:
        await service.close()
        await state.close()
    return resumed, memories, store.table


@pytest.mark.parametrize("mode", ["redact", "pseudonymize"])
async def test_resumed_runs_leave_no_pii_in_the_pgvector_store_or_its_tables(
    tmp_path: Path, pgvector_database: str, state_uri: str, mode: str
) -> None:
    config = _config(tmp_path, state_uri, pgvector_database, mode)
    resumed, memories, table = await _resumed_runs(config, EMAIL)
    [result] = resumed
    assert result.status is RunStatus.SUCCEEDED, result.error
    # The caller gets back the real values added after the resume (what the first process
    # stored stays a placeholder: the resumed process never saw it).
    assert IBAN in result.output
    # Through the store: both steps' memories, every field.
    assert sorted(m.step_name for m in memories) == ["later", "learn"]
    for memory in memories:
        fields = [memory.text, memory.scope, memory.run_id, memory.step_name, memory.metadata]
        _assert_clean(f"memory {memory.step_name}", json.dumps(fields, ensure_ascii=False))
    learned = next(m for m in memories if m.step_name == "learn")
    assert learned.metadata["scope.user"].startswith("fp:"), learned.metadata
    assert COMPRESSIBLE in learned.text  # stored whole (scrubbed), not dropped
    assert INCOMPRESSIBLE in next(m for m in memories if m.step_name == "later").text
    # Every row of every table of the database: memories, the collection record, and the
    # state and outbox when the state database is there too.
    rows = await _every_row(pgvector_database)
    assert f"public.{table}" in rows
    if not state_uri.startswith("sqlite"):
        assert "public.workflow_state" in rows
        assert "public.flujo_memory_outbox" in rows
    for where, text in rows.items():
        _assert_clean(where, text)
    assert COMPRESSIBLE in rows[f"public.{table}"]
    # The check read TOASTed values: one compressed inline, one out of line.
    compressed, chunks = await _toasted(pgvector_database, table)
    assert compressed >= 1
    assert chunks >= 1


async def test_resumed_runs_keep_their_flagged_scope_keyed_and_apart(
    tmp_path: Path, pgvector_database: str
) -> None:
    """Two customers' runs, each resumed: every memory's flagged scope value is a keyed
    fingerprint, and the two customers never share a scope (or one would recall the other's
    memories)."""
    config = _config(tmp_path, "sqlite:///.flujo/flujo.db", pgvector_database, "pseudonymize")
    resumed, memories, _ = await _resumed_runs(config, EMAIL, BOB)
    assert [r.status for r in resumed] == [RunStatus.SUCCEEDED] * 2
    assert len(memories) == 4
    users = {m.metadata["scope.user"] for m in memories}
    assert all(user.startswith("fp:") for user in users), users
    assert len(users) == 2, users
