"""flujo-memory: index throughput, query latency and recall of every embedded vector store.

For each store that can run here, at 10k and 100k memories of 384 dimensions: memories
indexed per second (``store.add`` in batches of 1,000, payload included), query p50/p95
(top 10, no filter), p50 with a scope pre-filter (1 tenant of 10), and recall@10 against
exact (numpy brute-force) search. Stores: ``qdrant`` (the default: Qdrant Edge embedded on
disk), ``memory`` (numpy), ``chroma`` (when installed), and qdrant-client's own local mode
(``path=``) at 10k only, for comparison (at 100k it takes minutes to load).

Vectors: a Gaussian mixture (1,000 clusters with random centres, points spread around them,
normalised), not uniform noise: embeddings of real text cluster by topic, and recall of
approximate indexes depends on that structure. Queries are fresh draws from the same mixture.
Target (issue #6) for the default store: >= 5,000 memories/s, p50 <= 10 ms at 100k,
recall@10 >= 0.95. Prints figures, asserts nothing.

    python benchmarks/memory.py [--sizes 10000,100000] [--queries 200] [--stores chroma]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import numpy as np

    from flujo.domain.interfaces import Memory
    from flujo_memory.stores.memory import InMemoryStore
except ImportError as exc:  # e.g. `nox -s bench` installs flujo-core only
    print(f"benchmarks/memory.py: skipped, flujo-memory is not installed ({exc.name})")
    raise SystemExit(0) from None

DIM = 384
BATCH = 1000
TENANTS = 10


def mixture(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """``n`` normalised points around randomly chosen ``centres``."""
    picks = rng.integers(0, centres.shape[0], n)
    spread = rng.uniform(0.3, 0.8, size=(n, 1))
    x = centres[picks] + spread * rng.normal(size=(n, DIM)) / np.sqrt(DIM) * 4
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def memories(vectors: np.ndarray) -> list[Memory]:
    return [
        Memory(
            id=f"m{i}",
            text=f"memory {i}: a remembered step output of about sixty characters",
            vector=vectors[i].tolist(),
            scope=f"tenant-{i % TENANTS}",
            run_id=f"run-{i // 50}",
            step_name="learn",
            metadata={"i": i},
            created_at=1_700_000_000.0 + i,
        )
        for i in range(vectors.shape[0])
    ]


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


async def measure(
    make: Callable[[Path], Any], data: np.ndarray, queries: np.ndarray, truth: list[set[str]]
) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="flujo-mem-bench-"))
    store = make(folder)
    try:
        items = memories(data)
        started = time.perf_counter()
        for i in range(0, len(items), BATCH):
            await store.add(items[i : i + BATCH])
        index_s = time.perf_counter() - started
        await store.search(queries[0].tolist(), 10)  # warm-up
        plain: list[float] = []
        hits = 0
        for q, expected in zip(queries, truth, strict=True):
            t = time.perf_counter()
            found = await store.search(q.tolist(), 10)
            plain.append((time.perf_counter() - t) * 1000)
            hits += len({f.memory.id for f in found} & expected)
        scoped: list[float] = []
        for j, q in enumerate(queries[: max(20, len(queries) // 4)]):
            t = time.perf_counter()
            await store.search(q.tolist(), 10, filter={"scope": f"tenant-{j % TENANTS}"})
            scoped.append((time.perf_counter() - t) * 1000)
        return {
            "index_per_s": len(items) / index_s,
            "p50": pct(plain, 50),
            "p95": pct(plain, 95),
            "p50_scoped": pct(scoped, 50),
            "recall": hits / (10 * len(queries)),
        }
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            await close()
        shutil.rmtree(folder, ignore_errors=True)


def stores(size: int) -> list[tuple[str, Callable[[Path], Any]]]:
    from flujo_memory.stores.qdrant import QdrantEdgeStore, QdrantServerStore

    found: list[tuple[str, Callable[[Path], Any]]] = [
        ("qdrant (edge, default)", lambda p: QdrantEdgeStore(p, "bench")),
        ("memory (numpy)", lambda p: InMemoryStore()),
    ]
    if importlib.util.find_spec("chromadb") is not None:
        from flujo_memory.stores.chroma import ChromaStore

        found.append(("chroma", lambda p: ChromaStore(p, "bench")))
    if size <= 10_000:

        def local(p: Path) -> Any:
            from qdrant_client import AsyncQdrantClient

            return QdrantServerStore(client=AsyncQdrantClient(path=str(p)), collection="bench")

        found.append(("qdrant-client local (path=)", local))
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--stores", default="", help="only stores whose name contains this")
    args = parser.parse_args()
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    print(f"python {platform.python_version()} on {platform.machine()}, numpy {np.__version__}")
    print("vectors: Gaussian mixture, 1,000 clusters, 384-d, normalised; top 10; cosine\n")
    header = (
        f"{'store':30} {'memories':>9} {'index/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p50 scoped':>10} {'recall@10':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        data = mixture(size, rng, centres)
        queries = mixture(args.queries, rng, centres)
        scores = queries @ data.T
        top = np.argsort(-scores, axis=1)[:, :10]
        truth = [{f"m{i}" for i in row} for row in top]
        for name, make in stores(size):
            if args.stores not in name:
                continue
            r = await measure(make, data, queries, truth)
            print(
                f"{name:30} {size:>9,} {r['index_per_s']:>9,.0f} {r['p50']:>8.2f} "
                f"{r['p95']:>8.2f} {r['p50_scoped']:>10.2f} {r['recall']:>9.3f}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
