"""``memory``: an in-process, exact (numpy) vector store for tests and small jobs.

Nothing is persisted. Vectors are L2-normalised on the way in, so scores are cosine
similarities. Every operation runs in a worker thread (``asyncio.to_thread``) under a lock, so
a large search never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flujo.domain.interfaces import Memory, ScoredMemory
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
            self._buffer = np.zeros((0, 0), dtype=np.float32)

    async def close(self) -> None:
        """Nothing to release."""
