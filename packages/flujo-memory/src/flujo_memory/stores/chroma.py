"""``chroma``: chromadb's embedded persistent client (``pip install 'flujo-memory[chroma]'``).

Each memory is a Chroma record: the text is the document, and the metadata holds the memory's
fields, its metadata as JSON (types kept) and the type-tagged copy that filters compare.
Cosine space; calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flujo.domain.interfaces import Memory, ScoredMemory
from flujo_memory.errors import ExtraNotInstalledError, StoreUnavailableError
from flujo_memory.stores._common import (
    check_query,
    check_vectors,
    filter_terms,
    from_payload,
    safe_key,
    tag,
)

_INFO_KEYS = ("flujo_embedder", "flujo_dimension")


def _record_metadata(m: Memory) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": m.id,
        "scope": m.scope,
        "run_id": m.run_id if m.run_id is not None else "\x00none",
        "step_name": m.step_name if m.step_name is not None else "\x00none",
        "created_at": float(m.created_at),
        "metadata_json": json.dumps(m.metadata, default=str),
    }
    for key, value in m.metadata.items():
        meta[f"f_{safe_key(key)}"] = tag(value)
    return meta


def _memory(meta: Mapping[str, Any], document: str | None) -> Memory:
    def opt(key: str) -> str | None:
        value = meta.get(key)
        return None if value in (None, "\x00none") else str(value)

    return from_payload(
        {
            "id": meta["id"],
            "text": document or "",
            "scope": meta.get("scope", "default"),
            "run_id": opt("run_id"),
            "step_name": opt("step_name"),
            "created_at": meta.get("created_at", 0.0),
            "meta": str(meta.get("metadata_json") or "{}"),
        }
    )


class ChromaStore:
    """:class:`~flujo.domain.interfaces.VectorStoreProtocol` on a persistent Chroma collection."""

    def __init__(self, path: Path | str | None, collection: str = "flujo") -> None:
        try:
            import chromadb  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ExtraNotInstalledError(
                "the 'chroma' store needs the extra: pip install 'flujo-memory[chroma]'"
            ) from exc
        try:
            if path is None:
                self._client: Any = chromadb.EphemeralClient()
            else:
                Path(path).mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(path=str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreUnavailableError(f"cannot open the chroma store at {path}: {exc}") from exc
        self.name = collection
        self._lock = threading.Lock()
        self._col: Any = None

    def _collection(self, create: bool) -> Any:
        if self._col is None:
            names = {getattr(c, "name", c) for c in self._client.list_collections()}
            if self.name not in names and not create:
                return None
            self._col = self._client.get_or_create_collection(
                self.name, metadata={"hnsw:space": "cosine"}
            )
        return self._col

    def _dimension(self) -> int | None:
        col = self._collection(False)
        if col is None:
            return None
        meta = col.metadata or {}
        if "flujo_dimension" in meta:
            return int(meta["flujo_dimension"])
        got = col.get(limit=1, include=["embeddings"])
        embeddings = got.get("embeddings")
        if embeddings is None or len(embeddings) == 0:
            return None
        return len(embeddings[0])

    @staticmethod
    def _where(filter: Mapping[str, Any] | None, ids: Sequence[str] | None = None) -> Any:
        terms: list[dict[str, Any]] = [
            {path: {"$eq": value}} for path, value in filter_terms(filter)
        ]
        if ids is not None:
            terms.append({"id": {"$in": list(ids)}})
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else {"$and": terms}

    async def _call(self, fn: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    async def add(self, memories: Sequence[Memory]) -> None:
        """Insert or replace ``memories``."""
        if memories:
            await self._call(self._add, list(memories))

    def _add(self, memories: list[Memory]) -> None:
        check_vectors(memories, self._dimension())
        last = {m.id: m for m in memories}
        batch = list(last.values())
        self._collection(True).upsert(
            ids=[m.id for m in batch],
            embeddings=[list(m.vector or ()) for m in batch],
            documents=[m.text for m in batch],
            metadatas=[_record_metadata(m) for m in batch],
        )

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """The ``limit`` closest memories that match ``filter``."""
        if limit <= 0:
            return []
        result: list[ScoredMemory] = await self._call(
            self._search, list(query_vector), limit, filter
        )
        return result

    def _search(
        self, query: list[float], limit: int, filter: Mapping[str, Any] | None
    ) -> list[ScoredMemory]:
        col = self._collection(False)
        if col is None or col.count() == 0:
            return []
        dimension = self._dimension()
        if dimension is not None:
            check_query(query, dimension)
        got = col.query(
            query_embeddings=[query],
            n_results=min(limit, col.count()),
            where=self._where(filter),
            include=["documents", "metadatas", "distances"],
        )
        out = [
            ScoredMemory(_memory(meta, doc), 1.0 - float(dist))
            for meta, doc, dist in zip(
                got["metadatas"][0], got["documents"][0], got["distances"][0], strict=True
            )
        ]
        out.sort(key=lambda s: -s.score)
        return out

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete by ids and/or filter; return how many were deleted."""
        if (ids is None and filter is None) or (ids is not None and not ids):
            return 0
        deleted: int = await self._call(self._delete, ids, filter)
        return deleted

    def _delete(self, ids: Sequence[str] | None, filter: Mapping[str, Any] | None) -> int:
        col = self._collection(False)
        if col is None:
            return 0
        found = col.get(where=self._where(filter, ids), include=[])["ids"]
        if found:
            col.delete(ids=list(found))
        return len(found)

    async def get_info(self) -> dict[str, Any] | None:
        """The collection record kept in the collection metadata."""
        result: dict[str, Any] | None = await self._call(self._get_info)
        return result

    def _get_info(self) -> dict[str, Any] | None:
        col = self._collection(False)
        meta = (col.metadata or {}) if col is not None else {}
        if "flujo_dimension" not in meta:
            return None
        return {"embedder": meta.get("flujo_embedder"), "dimension": meta["flujo_dimension"]}

    async def set_info(self, info: Mapping[str, Any]) -> None:
        """Record the embedder and dimension in the collection metadata."""
        await self._call(self._set_info, dict(info))

    def _set_info(self, info: dict[str, Any]) -> None:
        col = self._collection(True)
        meta = {k: v for k, v in (col.metadata or {}).items() if not k.startswith("hnsw:")}
        meta.update(
            {"flujo_embedder": str(info.get("embedder")), "flujo_dimension": int(info["dimension"])}
        )
        col.modify(metadata=meta)

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many memories match ``filter``."""
        result: int = await self._call(self._count, filter)
        return result

    def _count(self, filter: Mapping[str, Any] | None) -> int:
        col = self._collection(False)
        if col is None:
            return 0
        if not filter:
            return int(col.count())
        return len(col.get(where=self._where(filter), include=[])["ids"])

    async def scan(self, filter: Mapping[str, Any] | None = None) -> list[Memory]:
        """Every memory matching ``filter`` (without vectors)."""
        result: list[Memory] = await self._call(self._scan, filter)
        return result

    def _scan(self, filter: Mapping[str, Any] | None) -> list[Memory]:
        col = self._collection(False)
        if col is None:
            return []
        got = col.get(where=self._where(filter), include=["documents", "metadatas"])
        return [_memory(m, d) for m, d in zip(got["metadatas"], got["documents"], strict=True)]

    async def reset(self) -> None:
        """Drop the collection."""
        await self._call(self._reset)

    def _reset(self) -> None:
        if self._collection(False) is not None:
            self._client.delete_collection(self.name)
        self._col = None

    async def close(self) -> None:
        """Nothing to release (chroma has no close)."""
