"""``qdrant``: Qdrant, embedded on disk (qdrant-edge) or a server/cluster (qdrant-client).

Embedded (no ``[memory] url``): one Qdrant Edge shard per collection under ``[memory] path``
(``.flujo/memory/<collection>``), searched by full scan, no HNSW graph (SIMD brute force over
the shard's segments, with keyword payload indexes on ``scope``, ``run_id`` and ``step_name``
for the pre-filter). Sealed segments keep an int8 copy of the vectors, scanned first, and the
best candidates are rescored with the float32 vectors (see ``_tuning``). A shard is opened by
one process at a time.

Server (``[memory] url = "http://qdrant:6333"``): the same payload layout and filters through
``qdrant_client.AsyncQdrantClient``; ``scope`` gets a tenant keyword index.

Both record the collection's embedder and dimension: the embedded store in
``<collection>.flujo.json`` beside the shard, the server in the collection's metadata.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import Memory, ScoredMemory
from flujo_memory import lexical
from flujo_memory.errors import CollectionMismatchError, StoreUnavailableError
from flujo_memory.stores._common import (
    CORE_KEYS,
    check_query,
    check_vectors,
    filter_terms,
    from_payload,
    point_id,
    to_payload,
)

if TYPE_CHECKING:
    import qdrant_edge
    from qdrant_client import AsyncQdrantClient
    from qdrant_client import models as qm

_WRITE_CHUNK = 2048
_OPTIMIZE_EVERY = 16_384
"""Points written (or deleted) after which the embedded store runs Qdrant's optimizers: the
growing segment is sealed with its int8 copy of the vectors (see ``_tuning``)."""
_SEAL_KB = 4096
"""Qdrant's indexing threshold: a segment with more vector data than this (KB) is sealed."""
_SEGMENTS = 16
"""Segments Qdrant's optimizers aim for. Its automatic choice (one per core) merged the
sealed segments again at every optimize: at 100k, 33 s of a 46 s load went to re-sealing,
against 10-15 s with 16 (which are also searched in parallel)."""
_RESCORE_AT_LEAST = 100
"""The dense half rescores at least this many int8 candidates with the float32 vectors."""
_SCROLL_PAGE = 1024
_LEX = "lex"
"""Name of the sparse (BM25) vector beside the unnamed dense one."""


def _with_lexical(info: Mapping[str, Any]) -> dict[str, Any]:
    return {**info, "lexical": lexical.LEXICAL_ID}


def _no_lexical_index(where: str) -> CollectionMismatchError:
    return CollectionMismatchError(
        f"the memory collection at {where} was built without a lexical index (before hybrid "
        'search); run `flujo memory reindex` to rebuild it, or set [memory] search = "dense"'
    )


# ====================================================================== embedded (qdrant-edge)


class QdrantEdgeStore:
    """The embedded ``qdrant`` store: a Qdrant Edge shard on disk, exact search."""

    def __init__(self, path: Path | str, collection: str = "flujo") -> None:
        self.root = Path(path)
        self.collection = collection
        self.shard_path = self.root / collection
        self.info_path = self.root / f"{collection}.flujo.json"
        self._lock = threading.Lock()
        self._shard: qdrant_edge.EdgeShard | None = None
        self._dimension: int | None = None
        self._lexical = False
        self._unsealed = 0  # points written or deleted since the optimizers last ran

    # ------------------------------------------------------------------ opening

    def _open(self, dimension: int | None) -> qdrant_edge.EdgeShard | None:
        """The open shard; created with ``dimension`` when given and absent. Lock held."""
        if self._shard is not None:
            return self._shard
        import qdrant_edge as qe

        try:
            info = self._read_info()
            if info is not None and "dimension" in info:
                self._dimension = int(info["dimension"])
            if self.shard_path.is_dir() and any(self.shard_path.iterdir()):
                # Only shards created with the sparse vector record it (older ones: dense only).
                self._lexical = (info or {}).get("lexical") == lexical.LEXICAL_ID
                # The tuning applies to shards created before it too (loading with a config
                # rewrites the shard's): the optimize below seals their segments.
                tuning = None
                if self._dimension is not None:
                    tuning = _tuning(qe, vectors=self._vector_params(qe, self._dimension))
                self._shard = qe.EdgeShard.load(str(self.shard_path), tuning)
                self._shard.optimize()
            elif dimension is not None or self._dimension is not None:
                self._shard = self._create(qe, self._dimension or dimension or 0)
                self._write_info(info or {"dimension": self._dimension})
            else:
                return None
        except StoreUnavailableError:
            raise
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot open the embedded memory store at {self.shard_path}: {exc}"
            ) from exc
        except Exception as exc:
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise StoreUnavailableError(
                    f"the embedded memory store at {self.shard_path} is open in another process "
                    "(a running flujo runner?); stop it, or set [memory] url to a Qdrant server "
                    "to share memory between processes"
                ) from exc
            raise StoreUnavailableError(
                f"cannot open the embedded memory store at {self.shard_path}: {exc}"
            ) from exc
        if self._dimension is None and dimension is not None:
            self._dimension = dimension
        return self._shard

    def _create(self, qe: Any, dimension: int) -> qdrant_edge.EdgeShard:
        self.root.mkdir(parents=True, exist_ok=True)
        config = _tuning(
            qe,
            vectors=self._vector_params(qe, dimension),
            # BM25 without its IDF factor (flujo_memory.lexical); Qdrant applies the IDF.
            sparse_vectors={_LEX: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        shard: qdrant_edge.EdgeShard = qe.EdgeShard.create(str(self.shard_path), config)
        for key in CORE_KEYS:
            shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
        self._dimension = dimension
        self._lexical = True
        return shard

    @staticmethod
    def _vector_params(qe: Any, dimension: int) -> Any:
        return qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)

    def _read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.info_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreUnavailableError(f"cannot read {self.info_path}: {exc}") from exc
        return dict(data) if isinstance(data, dict) else None

    def _filter(self, filter: Mapping[str, Any] | None, ids: Sequence[str] | None = None) -> Any:
        import qdrant_edge as qe

        must: list[Any] = [
            qe.FieldCondition(path, match=qe.MatchValue(value))
            for path, value in filter_terms(filter)
        ]
        if ids is not None:
            must.append(qe.HasIdCondition({point_id(i) for i in ids}))
        return qe.Filter(must=must) if must else None

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    # ------------------------------------------------------------------ protocol

    async def add(self, memories: Sequence[Memory]) -> None:
        """Insert or replace ``memories`` (idempotent on ``Memory.id``)."""
        if memories:
            await self._call(self._add, list(memories))

    def _add(self, memories: list[Memory]) -> None:
        import qdrant_edge as qe

        shard = self._open(check_vectors(memories, self._dimension))
        assert shard is not None
        if self._dimension is not None:
            check_vectors(memories[:1], self._dimension)
        for start in range(0, len(memories), _WRITE_CHUNK):
            points = [
                qe.Point(point_id(m.id), self._vectors(qe, m), to_payload(m))
                for m in memories[start : start + _WRITE_CHUNK]
            ]
            shard.update(qe.UpdateOperation.upsert_points(points))
        self._written(shard, len(memories))

    def _written(self, shard: qdrant_edge.EdgeShard, count: int) -> None:
        """Run Qdrant's optimizers every ``_OPTIMIZE_EVERY`` points changed. Qdrant Edge has
        no background optimizer: without this every point stays in the growing segment,
        scanned in float32. Lock held (searches wait for it: about a second per 16k points)."""
        self._unsealed += count
        if self._unsealed >= _OPTIMIZE_EVERY:
            shard.optimize()
            self._unsealed = 0

    def _vectors(self, qe: Any, memory: Memory) -> Any:
        dense = list(memory.vector or ())
        if not self._lexical:
            return dense
        return {"": dense, _LEX: qe.SparseVector(*lexical.document_vector(memory.text))}

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """The ``limit`` closest memories matching ``filter`` (filter applied before limit)."""
        if limit <= 0:
            return []
        result: list[ScoredMemory] = await self._call(
            self._search, list(query_vector), limit, filter
        )
        return result

    def _search(
        self, query: list[float], limit: int, filter: Mapping[str, Any] | None
    ) -> list[ScoredMemory]:
        import qdrant_edge as qe

        shard = self._open(None)
        if shard is None or self._dimension is None:
            return []
        check_query(query, self._dimension)
        hits = shard.search(
            qe.SearchRequest(
                query=qe.Query.Nearest(query),
                limit=limit,
                filter=self._filter(filter),
                params=_dense_params(qe, limit),
                with_payload=True,
            )
        )
        return [ScoredMemory(from_payload(h.payload or {}), float(h.score)) for h in hits]

    async def hybrid_search(
        self,
        query_text: str,
        query_vector: Sequence[float] | None,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: lexical.SearchMode = "hybrid",
    ) -> list[ScoredMemory]:
        """``lexical``: BM25 (sparse vectors, Qdrant's IDF); ``hybrid``: BM25 and the dense
        search as two prefetches fused by Qdrant's reciprocal rank fusion; ``dense``:
        :meth:`search`. ``filter`` restricts both halves."""
        if limit <= 0:
            return []
        if mode == "dense":
            if query_vector is None:
                raise ValueError("a dense search needs a query vector")
            return await self.search(query_vector, limit, filter=filter)
        dense = None if query_vector is None else list(query_vector)
        result: list[ScoredMemory] = await self._call(
            self._hybrid, query_text, dense, limit, filter, mode
        )
        return result

    def _hybrid(
        self,
        text: str,
        dense: list[float] | None,
        limit: int,
        filter: Mapping[str, Any] | None,
        mode: lexical.SearchMode,
    ) -> list[ScoredMemory]:
        import qdrant_edge as qe

        shard = self._open(None)
        if shard is None or self._dimension is None:
            return []
        if not self._lexical:
            raise _no_lexical_index(str(self.shard_path))
        flt = self._filter(filter)
        sparse = qe.Query.Nearest(qe.SparseVector(*lexical.query_vector(text)), using=_LEX)
        # Payloads are read afterwards for the final hits only: asked of the query, they cost
        # a third of a hybrid search at 100k (read for every prefetched candidate, it seems).
        if mode == "lexical" or dense is None:
            request = qe.QueryRequest(limit=limit, query=sparse, filter=flt, with_payload=False)
        else:
            check_query(dense, self._dimension)
            depth = lexical.candidates(limit)
            params = _dense_params(qe, depth)
            fusion: Any = qe.Fusion.Rrf(k=lexical.RRF_K)  # the stub omits the nested class
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(depth, qe.Query.Nearest(dense), filter=flt, params=params),
                    qe.Prefetch(depth, sparse, filter=flt),
                ],
                query=fusion,
                # No filter on the fusion: it only ranks the prefetched points, each already
                # filtered (checking them again cost ~2 ms at 100k).
                with_payload=False,
            )
        hits = shard.query(request)
        if not hits:
            return []
        records = shard.retrieve([h.id for h in hits], with_payload=True, with_vector=False)
        payloads = {r.id: r.payload or {} for r in records}
        return [ScoredMemory(from_payload(payloads[h.id]), float(h.score)) for h in hits]

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete memories by id and/or filter; return how many were deleted."""
        if ids is None and filter is None:
            return 0
        if ids is not None and not ids:
            return 0
        deleted: int = await self._call(self._delete, ids, filter)
        return deleted

    def _delete(self, ids: Sequence[str] | None, filter: Mapping[str, Any] | None) -> int:
        import qdrant_edge as qe

        shard = self._open(None)
        if shard is None:
            return 0
        flt = self._filter(filter, ids)
        found = shard.count(qe.CountRequest(exact=True, filter=flt))
        if found:
            shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
            self._written(shard, int(found))  # deleted points are vacuumed by the optimizers
        return int(found)

    # ------------------------------------------------------------------ managed

    async def get_info(self) -> dict[str, Any] | None:
        """The collection record (``embedder``, ``dimension``), ``None`` if never written."""
        result: dict[str, Any] | None = await self._call(self._read_info)
        return result

    async def set_info(self, info: Mapping[str, Any]) -> None:
        """Create the shard for ``info["dimension"]`` (if needed) and write the record."""
        await self._call(self._set_info, dict(info))

    def _set_info(self, info: dict[str, Any]) -> None:
        self._open(int(info["dimension"]))
        self._write_info(info)

    def _write_info(self, info: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = dict(info)
        if self._lexical:  # what the shard was built with, whatever the caller writes
            record["lexical"] = lexical.LEXICAL_ID
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, sort_keys=True))
        tmp.replace(self.info_path)

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many memories match ``filter``."""
        result: int = await self._call(self._count, filter)
        return result

    def _count(self, filter: Mapping[str, Any] | None) -> int:
        import qdrant_edge as qe

        shard = self._open(None)
        if shard is None:
            return 0
        return int(shard.count(qe.CountRequest(exact=True, filter=self._filter(filter))))

    async def scan(self, filter: Mapping[str, Any] | None = None) -> list[Memory]:
        """Every memory matching ``filter``, without vectors."""
        result: list[Memory] = await self._call(self._scan, filter)
        return result

    def _scan(self, filter: Mapping[str, Any] | None) -> list[Memory]:
        import qdrant_edge as qe

        shard = self._open(None)
        if shard is None:
            return []
        out: list[Memory] = []
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=self._filter(filter),
                    with_payload=True,
                    with_vector=False,
                )
            )
            out.extend(from_payload(r.payload or {}) for r in records)
            if offset is None:
                return out

    async def reset(self) -> None:
        """Delete the shard and its record."""
        await self._call(self._reset)

    def _reset(self) -> None:
        self._close()
        shutil.rmtree(self.shard_path, ignore_errors=True)
        self.info_path.unlink(missing_ok=True)
        self._dimension = None
        self._lexical = False
        self._unsealed = 0

    async def close(self) -> None:
        """Flush and close the shard (another process may open it afterwards)."""
        await self._call(self._close)

    def _close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


def _tuning(qe: Any, **config: Any) -> qdrant_edge.EdgeConfig:
    """The embedded shard's configuration: ``config`` (vectors) plus how it is searched.

    The dense half of a search is a full scan (exact up to the rescoring below, no index to
    build): at 100,000 memories of 256 float32 dimensions that reads 100 MB per query, which
    alone took most of the 10 ms budget. So segments are sealed by Qdrant's optimizers (run
    by the store every ``_OPTIMIZE_EVERY`` points, see ``_written``) with an int8 copy of
    their vectors (scalar quantisation, 0.99 quantile, in RAM: a quarter of the bytes), a
    search scans that copy and rescores its best candidates with the float32 vectors
    (``_dense_params``), and the growing segment is scanned in float32. ``m = 0`` (and a
    full-scan threshold no shard reaches) keeps the optimizers from building an HNSW graph:
    minutes of CPU at 100k on two cores, for an approximate search.
    """
    config_: qdrant_edge.EdgeConfig = qe.EdgeConfig(
        **config,
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=1 << 40),
        quantization_config=qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=0.99, always_ram=True
        ),
        optimizers=qe.EdgeOptimizersConfig(
            indexing_threshold=_SEAL_KB, default_segment_number=_SEGMENTS
        ),
    )
    return config_


def _dense_params(qe: Any, depth: int) -> Any:
    """Search parameters of the dense half fetching ``depth`` results: the int8 scan keeps
    ``max(2 * depth, _RESCORE_AT_LEAST)`` candidates, rescored with the float32 vectors."""
    oversampling = max(2.0, _RESCORE_AT_LEAST / max(depth, 1))
    return qe.SearchParams(
        quantization=qe.QuantizationSearchParams(rescore=True, oversampling=oversampling)
    )


# ====================================================================== server (qdrant-client)


class QdrantServerStore:
    """The ``qdrant`` store against a Qdrant server or cluster, through the async client.

    ``client`` may be given directly (tests pass ``AsyncQdrantClient(location=":memory:")``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        collection: str = "flujo",
        client: AsyncQdrantClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if client is None:
            from qdrant_client import AsyncQdrantClient

            client = AsyncQdrantClient(
                url=url, api_key=api_key, timeout=int(timeout_s), check_compatibility=False
            )
        self.client = client
        self.url = url or "(client)"
        self.collection = collection
        self._dimension: int | None = None
        self._ready = False
        self._lexical = False
        self._create_lock = asyncio.Lock()

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"cannot reach the Qdrant server at {self.url} ([memory] url): "
            f"{type(exc).__name__}: {exc}"
        )

    async def _guard(self, coro: Any) -> Any:
        import httpx
        from qdrant_client.http.exceptions import ResponseHandlingException

        try:
            return await coro
        except (ResponseHandlingException, httpx.TransportError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def _exists(self) -> bool:
        if self._ready:
            return True
        exists = bool(await self._guard(self.client.collection_exists(self.collection)))
        if exists:
            col = await self._guard(self.client.get_collection(self.collection))
            info = dict(getattr(col.config, "metadata", None) or {})
            if "dimension" in info:
                self._dimension = int(info["dimension"])
            else:
                vectors = col.config.params.vectors
                self._dimension = int(getattr(vectors, "size", 0)) or None
            # Collections created before hybrid search have no sparse vector: dense only.
            self._lexical = _LEX in (col.config.params.sparse_vectors or {})
            self._ready = True
        return exists

    async def _ensure(self, dimension: int, info: Mapping[str, Any] | None = None) -> None:
        async with self._create_lock:
            if await self._exists():
                return
            from qdrant_client import models as qm

            await self._guard(
                self.client.create_collection(
                    self.collection,
                    vectors_config=qm.VectorParams(size=dimension, distance=qm.Distance.COSINE),
                    # BM25 without its IDF factor (flujo_memory.lexical); Qdrant applies the IDF.
                    sparse_vectors_config={_LEX: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                    metadata=_with_lexical(info) if info is not None else None,
                )
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # local mode: indexes are no-ops
                for key in CORE_KEYS:
                    schema: Any = (
                        qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True)
                        if key == "scope"
                        else qm.PayloadSchemaType.KEYWORD
                    )
                    await self._guard(
                        self.client.create_payload_index(
                            self.collection, key, field_schema=schema, wait=True
                        )
                    )
            self._dimension = dimension
            self._lexical = True
            self._ready = True

    def _filter(
        self, filter: Mapping[str, Any] | None, ids: Sequence[str] | None = None
    ) -> qm.Filter | None:
        from qdrant_client import models as qm

        must: list[Any] = [
            qm.FieldCondition(key=path, match=qm.MatchValue(value=value))
            for path, value in filter_terms(filter)
        ]
        if ids is not None:
            must.append(qm.HasIdCondition(has_id=[point_id(i) for i in ids]))
        return qm.Filter(must=must) if must else None

    async def add(self, memories: Sequence[Memory]) -> None:
        """Insert or replace ``memories`` (idempotent on ``Memory.id``)."""
        if not memories:
            return
        from qdrant_client import models as qm

        dimension = check_vectors(memories, self._dimension)
        await self._ensure(dimension)
        check_vectors(memories, self._dimension)
        for start in range(0, len(memories), _WRITE_CHUNK):
            points = [
                qm.PointStruct(id=point_id(m.id), vector=self._vectors(m), payload=to_payload(m))
                for m in memories[start : start + _WRITE_CHUNK]
            ]
            await self._guard(self.client.upsert(self.collection, points=points, wait=True))

    def _vectors(self, memory: Memory) -> Any:
        from qdrant_client import models as qm

        dense = list(memory.vector or ())
        if not self._lexical:
            return dense
        indices, values = lexical.document_vector(memory.text)
        return {"": dense, _LEX: qm.SparseVector(indices=indices, values=values)}

    async def hybrid_search(
        self,
        query_text: str,
        query_vector: Sequence[float] | None,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: lexical.SearchMode = "hybrid",
    ) -> list[ScoredMemory]:
        """As :meth:`QdrantEdgeStore.hybrid_search`, with the server's query API: two filtered
        prefetches fused by reciprocal rank (``k = lexical.RRF_K``)."""
        if mode == "dense":
            if query_vector is None:
                raise ValueError("a dense search needs a query vector")
            return await self.search(query_vector, limit, filter=filter)
        if limit <= 0 or not await self._exists() or self._dimension is None:
            return []
        if not self._lexical:
            raise _no_lexical_index(f"collection {self.collection!r} on {self.url}")
        from qdrant_client import models as qm

        flt = self._filter(filter)
        indices, values = lexical.query_vector(query_text)
        sparse = qm.SparseVector(indices=indices, values=values)
        if mode == "lexical" or query_vector is None:
            call = self.client.query_points(
                self.collection,
                query=sparse,
                using=_LEX,
                limit=limit,
                query_filter=flt,
                with_payload=True,
            )
        else:
            check_query(query_vector, self._dimension)
            depth = lexical.candidates(limit)
            call = self.client.query_points(
                self.collection,
                prefetch=[
                    qm.Prefetch(query=list(query_vector), filter=flt, limit=depth),
                    qm.Prefetch(query=sparse, using=_LEX, filter=flt, limit=depth),
                ],
                query=qm.RrfQuery(rrf=qm.Rrf(k=lexical.RRF_K)),
                limit=limit,
                query_filter=flt,
                with_payload=True,
            )
        response = await self._guard(call)
        return [
            ScoredMemory(from_payload(p.payload or {}), float(p.score)) for p in response.points
        ]

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """The ``limit`` closest memories matching ``filter`` (filter applied before limit)."""
        if limit <= 0 or not await self._exists() or self._dimension is None:
            return []
        check_query(query_vector, self._dimension)
        response = await self._guard(
            self.client.query_points(
                self.collection,
                query=list(query_vector),
                limit=limit,
                query_filter=self._filter(filter),
                with_payload=True,
            )
        )
        return [
            ScoredMemory(from_payload(p.payload or {}), float(p.score)) for p in response.points
        ]

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete memories by id and/or filter; return how many were deleted."""
        if (ids is None and filter is None) or (ids is not None and not ids):
            return 0
        if not await self._exists():
            return 0
        from qdrant_client import models as qm

        flt = self._filter(filter, ids)
        assert flt is not None  # ids or filter was given
        found = await self.count_filter(flt)
        if found:
            await self._guard(
                self.client.delete(
                    self.collection, points_selector=qm.FilterSelector(filter=flt), wait=True
                )
            )
        return found

    async def count_filter(self, flt: qm.Filter | None) -> int:
        """Exact count of points matching a native filter."""
        result = await self._guard(self.client.count(self.collection, count_filter=flt, exact=True))
        return int(result.count)

    async def get_info(self) -> dict[str, Any] | None:
        """The collection record kept in the collection's metadata."""
        exists = bool(await self._guard(self.client.collection_exists(self.collection)))
        if not exists:
            return None
        col = await self._guard(self.client.get_collection(self.collection))
        metadata = getattr(col.config, "metadata", None)
        return dict(metadata) if metadata else None

    async def set_info(self, info: Mapping[str, Any]) -> None:
        """Create the collection (if needed) and record ``info`` in its metadata."""
        await self._ensure(int(info["dimension"]), info)
        record = _with_lexical(info) if self._lexical else dict(info)
        await self._guard(self.client.update_collection(self.collection, metadata=record))

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many memories match ``filter``."""
        if not await self._exists():
            return 0
        return await self.count_filter(self._filter(filter))

    async def scan(self, filter: Mapping[str, Any] | None = None) -> list[Memory]:
        """Every memory matching ``filter``, without vectors."""
        if not await self._exists():
            return []
        out: list[Memory] = []
        offset: Any = None
        while True:
            records, offset = await self._guard(
                self.client.scroll(
                    self.collection,
                    scroll_filter=self._filter(filter),
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            )
            out.extend(from_payload(r.payload or {}) for r in records)
            if offset is None:
                return out

    async def reset(self) -> None:
        """Drop the collection."""
        await self._guard(self.client.delete_collection(self.collection))
        self._ready, self._dimension, self._lexical = False, None, False

    async def close(self) -> None:
        """Close the client."""
        await self.client.close()
