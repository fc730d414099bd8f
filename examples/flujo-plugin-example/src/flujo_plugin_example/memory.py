"""A vector store and an embedder: ``example_dict`` and ``example_trigram``.

Both are small enough to read in one sitting and honest enough to pass Flujo's
``VectorStoreConformance``. They show the two contracts, not a production design: the store
keeps everything in the process (gone when it exits) and searches by scanning every memory.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from flujo.plugin import Memory, ScoredMemory

_FIELDS = ("scope", "run_id", "step_name")
"""Filter keys that name a ``Memory`` field; every other key names a metadata key."""

_ABSENT = object()


def _matches(memory: Memory, filter: Mapping[str, Any] | None) -> bool:
    """Every entry of ``filter`` equals the memory's value, type included (``"2"`` is not
    ``2``, and ``True`` is not ``1``)."""
    if not filter:
        return True
    for key, wanted in filter.items():
        value = getattr(memory, key) if key in _FIELDS else memory.metadata.get(key, _ABSENT)
        if value is _ABSENT or type(value) is not type(wanted) or value != wanted:
            return False
    return True


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is zero (it points nowhere)."""
    if len(a) != len(b):
        raise ValueError(f"vector of dimension {len(b)} does not match the query's {len(a)}")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms > 0.0 else 0.0


class DictVectorStore:
    """An in-process vector store: a dict of memories, searched by cosine similarity.

    Memories are copied in and out, so a caller changing a memory it added (or got back)
    does not change what is stored. Filters are applied before ``limit``. Every method
    runs to completion without awaiting, so concurrent calls on one event loop cannot
    interleave and need no lock.
    """

    def __init__(self) -> None:
        self._memories: dict[str, Memory] = {}

    async def add(self, memories: Sequence[Memory]) -> None:
        for memory in memories:
            if memory.vector is None:
                raise ValueError(f"memory {memory.id!r} has no vector: embed it before adding")
            self._memories[memory.id] = copy.deepcopy(memory)

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        if limit <= 0:
            return []
        scored = [
            ScoredMemory(memory=copy.deepcopy(m), score=_cosine(query_vector, m.vector or []))
            for m in self._memories.values()
            if _matches(m, filter)
        ]
        # Ties broken by id so the same store always answers the same way.
        scored.sort(key=lambda s: (-s.score, s.memory.id))
        return scored[:limit]

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        if ids is None and filter is None:
            # Deleting everything must be asked for explicitly (filter={}), never by omission.
            raise ValueError("delete needs ids, a filter, or both")
        chosen = set(ids) if ids is not None else set(self._memories)
        doomed = [
            mid
            for mid, memory in self._memories.items()
            if mid in chosen and (filter is None or _matches(memory, filter))
        ]
        for mid in doomed:
            del self._memories[mid]
        return len(doomed)


class TrigramEmbedder:
    """A deterministic, offline embedder: character trigrams hashed into ``dimension`` buckets.

    Texts sharing many trigrams get close vectors, so it finds spelling-level matches
    ("password" ~ "passwords"), not meaning. Vectors are unit length. The
    ``identity`` tells a memory plugin which collection it built.
    """

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise ValueError(f"dimension must be at least 2, got {dimension}")
        self.dimension = dimension
        self.identity = f"example_trigram:{dimension}"

    def _embed_one(self, text: str) -> list[float]:
        padded = f"  {text.casefold()} "
        vector = [0.0] * self.dimension
        for i in range(len(padded) - 2):
            digest = hashlib.blake2b(padded[i : i + 3].encode("utf-8"), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "big") % self.dimension
            # A sign bit halves the damage of two trigrams sharing a bucket.
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector] if norm > 0.0 else vector

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]
