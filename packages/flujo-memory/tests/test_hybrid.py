"""Hybrid search (BM25 + dense, fused by reciprocal rank) on the stores that support it: the
in-memory store, embedded Qdrant (real qdrant-edge shards on disk), the Qdrant server
store's code on qdrant-client's local mode (no Qdrant server runs here) and pgvector on a
real PostgreSQL (the ``pgvector_dsn`` fixture of conftest.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flujo.domain.interfaces import Memory, ScoredMemory
from flujo_memory import lexical
from flujo_memory.errors import CollectionMismatchError
from flujo_memory.stores.memory import InMemoryStore
from flujo_memory.stores.qdrant import QdrantEdgeStore

TEXTS = [
    "error ZX4471 means the license server refused the token",
    "the printer on floor three is out of toner",
    "reset a password from the account settings page",
    "the vpn needs multi factor authentication",
    "lunch is served in the cafeteria at noon",
]


def _vector(i: int) -> list[float]:
    """Orthogonal axes: the dense half sees memory i only through the query's axis."""
    return [1.0 if j == i else 0.0 for j in range(len(TEXTS))]


def _memories(scope: str = "a") -> list[Memory]:
    return [
        Memory(id=f"{scope}-{i}", text=t, vector=_vector(i), scope=scope)
        for i, t in enumerate(TEXTS)
    ]


async def _pgvector(request: pytest.FixtureRequest) -> Any:
    pytest.importorskip("psycopg", reason="pip install 'flujo-memory[pgvector]'")
    from flujo_memory.stores.pgvector import PgVectorStore

    return PgVectorStore(request.getfixturevalue("pgvector_dsn"), f"h_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["memory", "qdrant", "qdrant-server-code", "pgvector"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    if request.param == "pgvector":
        pg = await _pgvector(request)
        yield pg
        await pg.reset()
        await pg.close()
        return
    if request.param == "qdrant-server-code":
        from qdrant_client import AsyncQdrantClient

        from flujo_memory.stores.qdrant import QdrantServerStore

        server = QdrantServerStore(client=AsyncQdrantClient(location=":memory:"))
        yield server
        await server.close()
        return
    edge = QdrantEdgeStore(tmp_path / "memory", "hybrid")
    yield edge
    await edge.close()


def _ids(hits: list[ScoredMemory]) -> list[str]:
    return [h.memory.id for h in hits]


async def test_lexical_finds_the_words_the_vector_misses(store: Any) -> None:
    await store.add(_memories())
    # The query's vector points at memory 1 (toner); its words name memory 0 only.
    query, vector = "what does ZX4471 mean", _vector(1)
    assert _ids(await store.hybrid_search(query, vector, 1, mode="dense")) == ["a-1"]
    assert _ids(await store.hybrid_search(query, vector, 1, mode="lexical")) == ["a-0"]
    both = _ids(await store.hybrid_search(query, vector, 2, mode="hybrid"))
    assert sorted(both) == ["a-0", "a-1"]
    scores = [h.score for h in await store.hybrid_search(query, vector, 5)]
    assert scores == sorted(scores, reverse=True)


async def test_scope_filter_applies_to_both_halves(store: Any) -> None:
    await store.add(_memories("a") + _memories("b"))
    for mode in ("hybrid", "lexical", "dense"):
        hits = await store.hybrid_search(
            "ZX4471 license token", _vector(0), 10, filter={"scope": "b"}, mode=mode
        )
        assert hits, mode
        assert {h.memory.scope for h in hits} == {"b"}, mode
    nothing = await store.hybrid_search("ZX4471", _vector(0), 10, filter={"scope": "zzz"})
    assert nothing == []


async def test_replaced_and_deleted_texts_leave_the_lexical_index(store: Any) -> None:
    await store.add(_memories())
    await store.add([Memory(id="a-0", text="a new text about kittens", vector=_vector(0))])
    assert await store.hybrid_search("ZX4471", None, 5, mode="lexical") == []
    assert _ids(await store.hybrid_search("kittens", None, 5, mode="lexical")) == ["a-0"]
    await store.delete(ids=["a-0"])
    assert await store.hybrid_search("kittens", None, 5, mode="lexical") == []


async def test_words_only_in_another_scope_do_not_leak(store: Any) -> None:
    await store.add(_memories("a"))
    await store.add([Memory(id="secret", text="payroll ZX4471", vector=_vector(0), scope="b")])
    hits = await store.hybrid_search("payroll", _vector(0), 5, filter={"scope": "a"})
    assert "secret" not in _ids(hits)


async def test_old_embedded_collection_without_a_lexical_index_asks_for_reindex(
    tmp_path: Path,
) -> None:
    store = QdrantEdgeStore(tmp_path, "old")
    await store.set_info({"embedder": "e:1", "dimension": 5})
    await store.add(_memories())
    await store.close()
    # What a collection written before hybrid search looks like: no "lexical" in its record.
    record = json.loads((tmp_path / "old.flujo.json").read_text())
    assert record.pop("lexical") == lexical.LEXICAL_ID
    (tmp_path / "old.flujo.json").write_text(json.dumps(record))
    old = QdrantEdgeStore(tmp_path, "old")
    assert _ids(await old.hybrid_search("x", _vector(2), 1, mode="dense")) == ["a-2"]
    with pytest.raises(CollectionMismatchError, match="flujo memory reindex"):
        await old.hybrid_search("ZX4471", _vector(2), 1)
    memories = await old.scan()
    await old.reset()  # what reindex does: rebuilt, the new shard has the lexical index
    for m in memories:
        m.vector = _vector(int(m.id[-1]))
    await old.add(memories)
    assert _ids(await old.hybrid_search("ZX4471", None, 1, mode="lexical")) == ["a-0"]
    await old.close()


async def test_server_collection_records_lexical_and_old_ones_ask_for_reindex() -> None:
    from qdrant_client import AsyncQdrantClient
    from qdrant_client import models as qm

    from flujo_memory.stores.qdrant import QdrantServerStore

    client = AsyncQdrantClient(location=":memory:")
    store = QdrantServerStore(client=client, collection="new")
    await store.set_info({"embedder": "e:1", "dimension": 5})
    assert await store.get_info() == {"embedder": "e:1", "dimension": 5, "lexical": "bm25:v1"}
    # A collection created before hybrid search: dense vectors only.
    await client.create_collection(
        "old", vectors_config=qm.VectorParams(size=5, distance=qm.Distance.COSINE)
    )
    old = QdrantServerStore(client=client, collection="old")
    await old.add(_memories())
    assert _ids(await old.hybrid_search("x", _vector(2), 1, mode="dense")) == ["a-2"]
    with pytest.raises(CollectionMismatchError, match="flujo memory reindex"):
        await old.hybrid_search("ZX4471", _vector(2), 1)
    await client.close()


async def test_pgvector_ranks_words_exactly_as_the_in_memory_store(
    request: pytest.FixtureRequest,
) -> None:
    """Same words, BM25 weights and IDF: the SQL ranking equals the reference one, scores
    included (a scope filter restricts the rows, never the collection-wide IDF)."""
    corpus = [
        f"{word} report number {i} about {other} and the {word}s of {other}"
        for i, (word, other) in enumerate(
            (w, o)
            for w in ("invoice", "refund", "ticket", "printer", "Überweisung")
            for o in ("billing", "privacy", "toner", "network", "café")
        )
    ] + ["an unrelated line", "refund refund refund", "privacy policy for the café"]
    memories = [
        Memory(id=f"m{i:02d}", text=t, vector=[1.0, float(i)], scope="ab"[i % 2])
        for i, t in enumerate(corpus)
    ]
    reference = InMemoryStore()
    pg = await _pgvector(request)
    try:
        await reference.add(memories)
        await pg.add(memories)
        for query in ("refund for billing", "café privacy", "Überweisung toner report", "x"):
            for flt in (None, {"scope": "b"}):
                want = await reference.hybrid_search(query, None, 7, filter=flt, mode="lexical")
                got = await pg.hybrid_search(query, None, 7, filter=flt, mode="lexical")
                assert [(h.memory.id, round(h.score, 9)) for h in got] == [
                    (h.memory.id, round(h.score, 9)) for h in want
                ], (query, flt)
    finally:
        await pg.reset()
        await pg.close()


async def test_old_pgvector_collection_without_a_lexical_index_asks_for_reindex(
    request: pytest.FixtureRequest,
) -> None:
    pg = await _pgvector(request)
    try:
        await pg.set_info({"embedder": "e:1", "dimension": 5})
        await pg.add(_memories())
        # What a collection written before hybrid search looks like: no lexical index recorded.
        async with pg._connection() as conn:
            await conn.execute(
                "UPDATE flujo_memory_collections SET lexical = NULL WHERE name = %s",
                (pg.collection,),
            )
        await pg.close()
        old = type(pg)(pg.dsn, pg.collection)
        assert _ids(await old.hybrid_search("x", _vector(2), 1, mode="dense")) == ["a-2"]
        with pytest.raises(CollectionMismatchError, match="flujo memory reindex"):
            await old.hybrid_search("ZX4471", _vector(2), 1)
        await old.add(_memories())  # writes to an old table still work (no terms column)
        memories = await old.scan()
        await old.reset()  # what reindex does: the new table has the lexical index
        for m in memories:
            m.vector = _vector(int(m.id[-1]))
        await old.add(memories)
        assert _ids(await old.hybrid_search("ZX4471", None, 1, mode="lexical")) == ["a-0"]
        pg = old
    finally:
        await pg.reset()
        await pg.close()


def test_fusion_is_reciprocal_rank() -> None:
    def hits(*ids: str) -> list[ScoredMemory]:
        return [ScoredMemory(Memory(id=i, text=i), 1.0) for i in ids]

    fused = lexical.fuse([hits("x", "y", "z"), hits("y")], 3)
    assert _ids(fused) == ["y", "x", "z"]
    assert fused[0].score == pytest.approx(1 / (lexical.RRF_K + 1) + 1 / (lexical.RRF_K + 2))
    tie = lexical.fuse([hits("x", "y"), hits("y", "x")], 2)  # equal sums: first ranking's order
    assert _ids(tie) == ["x", "y"]
    assert lexical.fuse([hits("x"), []], 0) == []


def test_tokens_fold_case_plurals_and_stop_words() -> None:
    assert lexical.tokens("The Files of a Library") == ["file", "library"]
    assert lexical.query_vector("files FILE")[0] == [lexical.term_id("file")]
    assert lexical.document_vector("") == ([], [])


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
async def test_memory_search_setting_reaches_the_store(
    mode: str, tmp_path: Path, config_file: Any
) -> None:
    """``[memory] search`` through a real runner on the default store and embedder: words no
    memory contains find nothing lexically, while a dense search always ranks something."""
    from memtest_pipelines import learn_only

    from flujo import Flujo

    cfg = config_file(index_steps=["learn"], search=mode)
    async with Flujo(learn_only, config=cfg) as runner:
        for text in ("error ZX4471 means the license was refused", "lunch is at noon"):
            await runner.run_async(text)
        service = runner.services["memory"]
        await service.flush()
        found = [h.memory.text for h in await service.search("ZX4471", limit=1)]
        assert found == ["fact: error ZX4471 means the license was refused"]
        unrelated = await service.search("qqqq", limit=2)
        assert (unrelated == []) is (mode == "lexical")
        info = await service.get_store().get_info()
        assert info["lexical"] == lexical.LEXICAL_ID
        assert info["embedder"].startswith("wordllama")


async def test_lexical_search_on_a_store_without_a_lexical_index_is_an_error() -> None:
    class DenseOnly:
        async def search(self, vector: Any, limit: int, *, filter: Any = None) -> list[Any]:
            raise AssertionError("lexical must not silently become dense")

    with pytest.raises(lexical.LexicalUnsupportedError, match='search = "lexical"'):
        await lexical.search_store(DenseOnly(), "lexical", "q", [1.0], 3, {})
    assert await lexical.search_store(InMemoryStore(), "lexical", "q", [1.0], 3, {}) == []


def test_wordllama_pools_each_text_alone_and_never_makes_nan() -> None:
    """wordllama's own embed pads a batch to its longest text and divides an empty text's zero
    vector by its zero norm (NaN, which the stores reject)."""
    import math

    from flujo_memory.embedders import WordLlamaEmbedder

    embedder = WordLlamaEmbedder()
    alone = embedder.embed_sync(["the vpn needs mfa"])[0]
    batch = embedder.embed_sync(["", "the vpn needs mfa", "a long text " * 500])
    assert batch[0] == [0.0] * 256
    assert all(math.isfinite(x) for row in batch for x in row)
    assert max(abs(a - b) for a, b in zip(alone, batch[1], strict=True)) < 1e-6


def _random_memories(count: int, dimension: int, seed: int) -> list[Memory]:
    import numpy as np

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dimension)).astype(np.float32)
    return [
        Memory(id=f"m{i}", text=f"note {i} word{i % 7}", vector=v.tolist(), scope=f"t{i % 3}")
        for i, v in enumerate(vectors)
    ]


def _exact_top(memories: list[Memory], query: list[float], k: int, scope: str) -> list[str]:
    import numpy as np

    rows = [m for m in memories if m.scope == scope]
    if not rows:
        return []
    matrix = np.asarray([m.vector for m in rows], dtype=np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    order = np.argsort(-(matrix @ np.asarray(query)))[:k]
    return [rows[i].id for i in order]


async def test_embedded_store_seals_segments_and_still_finds_the_exact_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``_OPTIMIZE_EVERY`` points the embedded store seals segments with an int8 copy of
    the vectors; searches scan that copy and rescore with the float32 vectors, so they still
    return the exact nearest neighbours (scope filter included), before and after a reopen
    and after deletes."""
    import numpy as np

    from flujo_memory.stores import qdrant

    monkeypatch.setattr(qdrant, "_OPTIMIZE_EVERY", 100)
    monkeypatch.setattr(qdrant, "_SEAL_KB", 1)
    memories = _random_memories(700, 32, seed=1)
    store = QdrantEdgeStore(tmp_path, "sealed")
    for start in range(0, len(memories), 64):
        await store.add(memories[start : start + 64])
    assert store._shard is not None
    assert store._shard.info().segments_count > 1
    queries = np.random.default_rng(2).normal(size=(20, 32)).tolist()

    async def check(s: QdrantEdgeStore, alive: list[Memory]) -> None:
        for j, q in enumerate(queries):
            scope = f"t{j % 3}"
            hits = await s.search(q, 10, filter={"scope": scope})
            assert _ids(hits) == _exact_top(alive, q, 10, scope)
            fused = await s.hybrid_search("note", q, 10, filter={"scope": scope})
            assert {h.memory.scope for h in fused} == ({scope} if hits else set())

    await check(store, memories)
    await store.close()
    again = QdrantEdgeStore(tmp_path, "sealed")
    await check(again, memories)
    assert await again.delete(filter={"scope": "t1"}) == len(
        [m for m in memories if m.scope == "t1"]
    )
    alive = [m for m in memories if m.scope != "t1"]
    await check(again, alive)
    assert await again.count() == len(alive)
    await again.close()


async def test_embedded_shard_created_before_the_tuning_is_tuned_on_open(tmp_path: Path) -> None:
    """A shard created without the int8 copy (before this release) is loaded with the tuning
    and optimized: it keeps its memories and searches them exactly."""
    import qdrant_edge as qe

    from flujo_memory.stores._common import CORE_KEYS, point_id, to_payload

    memories = _random_memories(300, 16, seed=3)
    shard = qe.EdgeShard.create(
        str(tmp_path / "old"),
        qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=16, distance=qe.Distance.Cosine),
            sparse_vectors={"lex": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        ),
    )
    for key in CORE_KEYS:
        shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
    points = [
        qe.Point(
            point_id(m.id),
            {"": m.vector, "lex": qe.SparseVector(*lexical.document_vector(m.text))},
            to_payload(m),
        )
        for m in memories
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    shard.flush()
    shard.close()
    record = {"embedder": "e:1", "dimension": 16, "lexical": lexical.LEXICAL_ID}
    (tmp_path / "old.flujo.json").write_text(json.dumps(record))
    store = QdrantEdgeStore(tmp_path, "old")
    query = memories[5].vector
    assert query is not None
    hits = await store.search(query, 5, filter={"scope": "t2"})
    assert _ids(hits) == _exact_top(memories, query, 5, "t2")
    assert await store.count() == 300
    assert _ids(await store.hybrid_search("word3", None, 3, mode="lexical"))[0].startswith("m")
    await store.close()
