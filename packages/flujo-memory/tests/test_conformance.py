"""Every store flujo-memory ships passes the core's VectorStoreConformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flujo.testing.conformance import VectorStoreConformance
from flujo_memory.stores.memory import InMemoryStore
from flujo_memory.stores.qdrant import QdrantEdgeStore, QdrantServerStore


class TestInMemoryStore(VectorStoreConformance):
    @pytest.fixture
    def store(self) -> InMemoryStore:
        return InMemoryStore()


class TestQdrantEmbeddedStore(VectorStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[QdrantEdgeStore]:
        store = QdrantEdgeStore(tmp_path / "memory", "conformance")
        yield store
        await store.close()


class TestQdrantServerCodePath(VectorStoreConformance):
    """The server store's code (filters, payloads, metadata) on qdrant-client's local mode."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[QdrantServerStore]:
        from qdrant_client import AsyncQdrantClient

        store = QdrantServerStore(client=AsyncQdrantClient(location=":memory:"))
        yield store
        await store.close()


class TestChromaStore(VectorStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        # chromadb is in the test extra: a missing install fails here rather than skipping.
        from flujo_memory.stores.chroma import ChromaStore

        return ChromaStore(tmp_path / "chroma", "conformance")


async def test_embedded_store_persists_across_reopen(tmp_path: Path) -> None:
    from flujo.domain.interfaces import Memory

    store = QdrantEdgeStore(tmp_path, "c")
    await store.set_info({"embedder": "e:1", "dimension": 3})
    await store.add([Memory(id="a", text="alpha", vector=[1.0, 0.0, 0.0], metadata={"k": 1})])
    await store.close()
    again = QdrantEdgeStore(tmp_path, "c")
    assert await again.get_info() == {"embedder": "e:1", "dimension": 3, "lexical": "bm25:v1"}
    hits = await again.search([1.0, 0.0, 0.0], 1, filter={"k": 1})
    assert [h.memory.text for h in hits] == ["alpha"]
    await again.close()


async def test_embedded_store_rejects_wrong_dimension(tmp_path: Path) -> None:
    from flujo.domain.interfaces import Memory
    from flujo_memory.errors import DimensionMismatchError

    store = QdrantEdgeStore(tmp_path, "c")
    await store.add([Memory(id="a", text="alpha", vector=[1.0, 0.0, 0.0])])
    with pytest.raises(DimensionMismatchError, match="2-dimension vector"):
        await store.add([Memory(id="b", text="beta", vector=[1.0, 0.0])])
    with pytest.raises(DimensionMismatchError, match="query vector has 4 dimensions"):
        await store.search([1.0, 0.0, 0.0, 0.0], 1)
    await store.close()


async def test_embedded_store_is_locked_by_its_process(tmp_path: Path) -> None:
    from flujo.domain.interfaces import Memory
    from flujo_memory.errors import StoreUnavailableError

    first = QdrantEdgeStore(tmp_path, "c")
    await first.add([Memory(id="a", text="alpha", vector=[1.0, 0.0])])
    second = QdrantEdgeStore(tmp_path, "c")
    with pytest.raises(StoreUnavailableError, match="open in another process"):
        await second.search([1.0, 0.0], 1)
    await first.close()
    assert len(await second.search([1.0, 0.0], 1)) == 1
    await second.close()
