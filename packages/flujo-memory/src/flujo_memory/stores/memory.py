"""``memory``: an in-process, exact (numpy) vector store for tests and small jobs.

Nothing is persisted. Vectors are L2-normalised on the way in, so scores are cosine
similarities. Texts are also indexed lexically (BM25 postings, :mod:`flujo_memory.lexical`)
for ``hybrid_search``. Every operation runs in a worker thread (``asyncio.to_thread``) under
a lock, so a large search never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flujo.domain.interfaces import Memory, ScoredMemory
from flujo_memory import lexical
from flujo_memory.stores._common import check_query, check_vectors, matches

_Matrix = npt.NDArray[np.float32]


def _normalise(rows: _Matrix) -> _Matrix:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: _Matrix = (rows / norms).astype(np.float32)
    return out


class InMemoryStore:
    """:class:`~flujo.domain.interfaces.VectorStoreProtocol` on a numpy matrix (exact search)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._memories: list[Memory] = []
        self._buffer: _Matrix = np.zeros((0, 0), dtype=np.float32)
        self._info: dict[str, Any] | None = None
        # term id -> {memory id: BM25 weight}; the document frequency is the posting's size.
        self._postings: dict[int, dict[str, float]] = {}
        self._terms: dict[str, list[int]] = {}

    @property
    def _matrix(self) -> _Matrix:
        """The rows in use (the buffer grows by doubling, so adds stay amortised O(batch))."""
        return self._buffer[: len(self._memories)]

    def _append_rows(self, rows: _Matrix) -> None:
        used = len(self._memories) - rows.shape[0]
        needed = used + rows.shape[0]
        if self._buffer.shape[0] < needed or self._buffer.shape[1] != rows.shape[1]:
            grown = np.zeros(
                (max(needed, 2 * self._buffer.shape[0], 64), rows.shape[1]), np.float32
            )
            if used:
                grown[:used] = self._buffer[:used]
            self._buffer = grown
        self._buffer[used:needed] = rows

    @property
    def dimension(self) -> int | None:
        """The dimension of the stored vectors, ``None`` while empty and unconfigured."""
        if self._info is not None:
            return int(self._info["dimension"])
        return self._matrix.shape[1] if self._memories else None

    # ------------------------------------------------------------------ protocol

    async def add(self, memories: Sequence[Memory]) -> None:
        """Insert or replace ``memories`` (by id)."""
        if not memories:
            return
        await asyncio.to_thread(self._add, list(memories))

    def _add(self, memories: list[Memory]) -> None:
        with self._lock:
            check_vectors(memories, self.dimension)
            last = {m.id: i for i, m in enumerate(memories)}  # a batch repeating an id: last wins
            batch = [memories[i] for i in sorted(last.values())]
            rows = _normalise(np.asarray([m.vector for m in batch], dtype=np.float32))
            appended: list[int] = []
            for i, memory in enumerate(batch):
                self._index_text(memory.id, memory.text)
                stored = self._copy(memory)
                index = self._ids.get(memory.id)
                if index is None:
                    self._ids[memory.id] = len(self._memories)
                    self._memories.append(stored)
                    appended.append(i)
                else:
                    self._memories[index] = stored
                    self._matrix[index] = rows[i]
            if appended:
                self._append_rows(rows[appended])

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """The ``limit`` memories most similar to ``query_vector`` that match ``filter``."""
        if limit <= 0 or not self._memories:
            return []
        return await asyncio.to_thread(self._search, list(query_vector), limit, filter)

    def _search(
        self, query: list[float], limit: int, filter: Mapping[str, Any] | None
    ) -> list[ScoredMemory]:
        with self._lock:
            if not self._memories:
                return []
            check_query(query, self._matrix.shape[1])
            q = _normalise(np.asarray([query], dtype=np.float32))[0]
            if filter:
                rows = np.fromiter(
                    (i for i, m in enumerate(self._memories) if matches(m, filter)), dtype=np.int64
                )
                if rows.size == 0:
                    return []
                scores = self._matrix[rows] @ q
            else:
                rows = np.arange(len(self._memories))
                scores = self._matrix @ q
            k = min(limit, scores.shape[0])
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            return [
                ScoredMemory(self._copy(self._memories[int(rows[i])]), float(scores[i]))
                for i in top
            ]

    def _index_text(self, memory_id: str, text: str) -> None:
        self._unindex_text(memory_id)
        indices, values = lexical.document_vector(text)
        for index, value in zip(indices, values, strict=True):
            self._postings.setdefault(index, {})[memory_id] = value
        self._terms[memory_id] = indices

    def _unindex_text(self, memory_id: str) -> None:
        for index in self._terms.pop(memory_id, ()):
            posting = self._postings.get(index)
            if posting is not None:
                posting.pop(memory_id, None)
                if not posting:
                    del self._postings[index]

    async def hybrid_search(
        self,
        query_text: str,
        query_vector: Sequence[float] | None,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: lexical.SearchMode = "hybrid",
    ) -> list[ScoredMemory]:
        """``lexical``: BM25 over the texts; ``hybrid``: that and the dense search fused by
        reciprocal rank; ``dense``: :meth:`search`. ``filter`` restricts both halves."""
        if not self._memories:
            return []

        async def words(text: str, k: int, flt: Mapping[str, Any] | None) -> list[ScoredMemory]:
            return await asyncio.to_thread(self._lexical, text, k, flt)

        return await lexical.fused_search(
            self.search, words, query_text, query_vector, limit, filter, mode
        )

    def _lexical(
        self, query_text: str, limit: int, filter: Mapping[str, Any] | None
    ) -> list[ScoredMemory]:
        with self._lock:
            total = len(self._memories)
            scores: dict[str, float] = {}
            for index in lexical.query_vector(query_text)[0]:
                posting = self._postings.get(index)
                if not posting:
                    continue
                weight = lexical.idf(len(posting), total)
                for memory_id, value in posting.items():
                    scores[memory_id] = scores.get(memory_id, 0.0) + weight * value
            ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
            hits: list[ScoredMemory] = []
            for memory_id, score in ranked:
                memory = self._memories[self._ids[memory_id]]
                if matches(memory, filter):
                    hits.append(ScoredMemory(self._copy(memory), score))
                    if len(hits) == limit:
                        break
            return hits

    @staticmethod
    def _copy(m: Memory) -> Memory:
        return Memory(
            m.id, m.text, None, m.scope, m.run_id, m.step_name, dict(m.metadata), m.created_at
        )

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete by ids and/or filter (both given: memories matching both)."""
        if ids is None and filter is None:
            return 0
        return await asyncio.to_thread(self._delete, ids, filter)

    def _delete(self, ids: Sequence[str] | None, filter: Mapping[str, Any] | None) -> int:
        with self._lock:
            wanted = set(ids) if ids is not None else None
            keep = [
                i
                for i, m in enumerate(self._memories)
                if not ((wanted is None or m.id in wanted) and matches(m, filter))
            ]
            removed = len(self._memories) - len(keep)
            if removed:
                kept = {self._memories[i].id for i in keep}
                for memory in self._memories:
                    if memory.id not in kept:
                        self._unindex_text(memory.id)
                kept_rows = self._buffer[keep]
                self._memories = [self._memories[i] for i in keep]
                self._buffer = kept_rows
                self._ids = {m.id: i for i, m in enumerate(self._memories)}
            return removed

    # ------------------------------------------------------------------ managed

    async def get_info(self) -> dict[str, Any] | None:
        """The collection record (embedder, dimension), ``None`` before the first write."""
        return dict(self._info) if self._info is not None else None

    async def set_info(self, info: Mapping[str, Any]) -> None:
        """Store the collection record."""
        self._info = dict(info)

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many memories match ``filter``."""
        with self._lock:
            return sum(1 for m in self._memories if matches(m, filter))

    async def scan(self, filter: Mapping[str, Any] | None = None) -> list[Memory]:
        """Every memory matching ``filter`` (without vectors)."""
        with self._lock:
            return [self._copy(m) for m in self._memories if matches(m, filter)]

    async def reset(self) -> None:
        """Forget everything, the collection record included."""
        with self._lock:
            self._ids, self._memories, self._info = {}, [], None
            self._postings, self._terms = {}, {}
            self._buffer = np.zeros((0, 0), dtype=np.float32)

    async def close(self) -> None:
        """Nothing to release."""
