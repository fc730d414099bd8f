"""flujo-memory: index throughput, query latency and recall of every embedded vector store.

For each store that can run here, at 10k and 100k memories of 384 dimensions: memories
indexed per second (``store.add`` in batches of 1,000, payload included), query p50/p95
(top 10, no filter) and p50/p95 with a scope pre-filter (1 tenant of 10), and recall@10
against exact (numpy brute-force) search, without and with the scope filter. Stores: ``qdrant`` (the
default: Qdrant Edge embedded on disk), ``memory`` (numpy), ``chroma`` (when installed),
``pgvector`` (when ``flujo-memory[pgvector]`` is installed: on ``FLUJO_BENCH_PGVECTOR_DSN``, or
on a throwaway ``pgserver`` PostgreSQL when that package is installed; the note under the
table says how its filtered searches ran), and qdrant-client's own local mode (``path=``) at
10k only, for comparison (at 100k it takes minutes to load).

Vectors: a Gaussian mixture (1,000 clusters with random centres, points spread around them,
normalised), not uniform noise: embeddings of real text cluster by topic, and recall of
approximate indexes depends on that structure. Queries are fresh draws from the same mixture.
Target (issue #6) for the default store: >= 5,000 memories/s, p50 <= 10 ms at 100k,
recall@10 >= 0.95. Prints figures, asserts nothing.

Quality section (first; ``--section quality`` runs it alone): known-item retrieval on real
text. The corpus is the docstrings of Python's own standard library and of common packages
installed beside it (``COMMON_PACKAGES``: numpy, pydantic, httpx, requests, click, rich,
jinja2...), read (never imported) from their ``.py`` files with :mod:`ast`, 10,000 of them
drawn at random: for every module, class and function docstring whose summary line and body
are long enough, the *summary line* is the query and the *rest of the docstring* is the
memory to find (a docstring's summary and its
body describe the same thing in different words: the known-item task of the issue). Files are
split by a hash of their path into a tuning part (1 in 5, the only part any constant was tried on)
and a held-out part that every printed figure comes from. For ``hashing``, ``wordllama``
(dense), BM25 (``lexical``) and ``hybrid`` (BM25 + wordllama, reciprocal rank fusion), all
through the default store (Qdrant Edge on disk): hit rate at 10 (right memory in the top 10)
and MRR@10. Then the defaults of a plain install at 100,000 memories (the corpus repeated with
distinct copies): memories indexed per second (embedding, BM25 and the store's write, in the
outbox's batches of 64) and end-to-end search latency (embed the query + hybrid search with
the scope filter every search carries). Target (issue #19): hit@10 >= 0.55, >= 2,000
memories/s, p50 <= 10 ms. ``--section speed`` runs that 100k part alone (a few minutes), with
baselines measured in the same run: WordLlama's own ``embed`` (the library's batch call) for
the indexing rate, and a plain numpy float32 scan of the same vectors for the search.

    python benchmarks/memory.py [--section quality|speed|stores|all] [--sizes 10000,100000]
        [--queries 200] [--stores pgvector] [--split heldout|tune] [--quality-size 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Generator
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


def exact_top10(data: np.ndarray, queries: np.ndarray, tenant: int | None = None) -> list[set[str]]:
    """Ids of each query's 10 nearest memories (within ``tenant`` when given), by numpy."""
    ids = np.arange(data.shape[0])
    if tenant is not None:
        ids = ids[ids % TENANTS == tenant]
    top = np.argsort(-(queries @ data[ids].T), axis=1)[:, :10]
    return [{f"m{ids[i]}" for i in row} for row in top]


async def measure(
    make: Callable[[Path], Any], data: np.ndarray, queries: np.ndarray, truth: list[set[str]]
) -> dict[str, Any]:
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
        scoped_hits = 0
        scoped_queries = queries[: max(20, len(queries) // 4)]
        for j, q in enumerate(scoped_queries):
            tenant = j % TENANTS
            t = time.perf_counter()
            found = await store.search(q.tolist(), 10, filter={"scope": f"tenant-{tenant}"})
            scoped.append((time.perf_counter() - t) * 1000)
            expected = exact_top10(data, q[None, :], tenant)[0]
            scoped_hits += len({f.memory.id for f in found} & expected)
        describe = getattr(store, "describe", None)
        return {
            "index_per_s": len(items) / index_s,
            "p50": pct(plain, 50),
            "p95": pct(plain, 95),
            "p50_scoped": pct(scoped, 50),
            "p95_scoped": pct(scoped, 95),
            "recall": hits / (10 * len(queries)),
            "recall_scoped": scoped_hits / (10 * len(scoped_queries)),
            "note": (await describe())["filtered_search"] if describe is not None else None,
        }
    finally:
        reset = getattr(store, "reset", None)
        if reset is not None and getattr(store, "dsn", None):  # a server: drop the table
            await reset()
        close = getattr(store, "close", None)
        if close is not None:
            await close()
        shutil.rmtree(folder, ignore_errors=True)


def no_pgvector() -> Generator[str | None, None, None]:
    """What :func:`pgvector_dsn` yields when no section needs PostgreSQL."""
    yield None


def pgvector_dsn() -> Generator[str | None, None, None]:
    """``FLUJO_BENCH_PGVECTOR_DSN``, else a throwaway pgserver (stopped and deleted after),
    else ``None`` (pgvector rows are skipped)."""
    given = os.environ.get("FLUJO_BENCH_PGVECTOR_DSN")
    if given or importlib.util.find_spec("pgvector") is None:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # platformdirs: XDG_RUNTIME_DIR unset
        try:
            from pgserver.postgres_server import get_server
        except ImportError:
            yield None
            return
        server = get_server(tempfile.mkdtemp(prefix="flujo-bench-pg-"), "delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def stores(size: int, pg_dsn: str | None) -> list[tuple[str, Callable[[Path], Any]]]:
    from flujo_memory.stores.qdrant import QdrantEdgeStore, QdrantServerStore

    found: list[tuple[str, Callable[[Path], Any]]] = [
        ("qdrant (edge, default)", lambda p: QdrantEdgeStore(p, "bench")),
        ("memory (numpy)", lambda p: InMemoryStore()),
    ]
    if importlib.util.find_spec("chromadb") is not None:
        from flujo_memory.stores.chroma import ChromaStore

        found.append(("chroma", lambda p: ChromaStore(p, "bench")))
    if pg_dsn is not None:
        from flujo_memory.stores.pgvector import PgVectorStore

        found.append(
            ("pgvector (hnsw)", lambda p: PgVectorStore(pg_dsn, f"bench_{uuid.uuid4().hex[:8]}"))
        )
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
    parser.add_argument("--section", default="all", choices=["all", "quality", "speed", "stores"])
    parser.add_argument("--split", default="heldout", choices=["heldout", "tune"])
    parser.add_argument("--quality-size", type=int, default=100_000)
    parser.add_argument(
        "--speed-corpus",
        default="copies",
        choices=["copies", "distinct"],
        help="speed section's memories: the held-out docstrings repeated as distinct copies, "
        "or distinct paragraphs of every docstring installed (no text, and far fewer words, "
        "seen twice: the embedder's word cache is not flattered)",
    )
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores)")
    # The speed section alone needs no PostgreSQL: start none.
    pg = pgvector_dsn() if args.section != "speed" else no_pgvector()
    pg_dsn = next(pg)
    try:
        if args.section in ("all", "quality"):
            await quality(args.split, pg_dsn)
        if args.section in ("all", "quality", "speed"):
            await speed(args.split, args.quality_size, args.speed_corpus)
            print(f"load average after quality and speed: {os.getloadavg()[0]:.1f}\n")
        if args.section in ("all", "stores"):
            await store_section(args, pg_dsn)
    finally:
        pg.close()


async def store_section(args: argparse.Namespace, pg_dsn: str | None) -> None:
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    print(f"python {platform.python_version()} on {platform.machine()}, numpy {np.__version__}")
    print("vectors: Gaussian mixture, 1,000 clusters, 384-d, normalised; top 10; cosine\n")
    print(f"scoped: filter to 1 tenant of {TENANTS}; recall scoped = against exact within it\n")
    header = (
        f"{'store':30} {'memories':>9} {'index/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p50 scoped':>10} {'p95 scoped':>10} {'recall@10':>9} {'scoped':>7}"
    )
    print(header)
    print("-" * len(header))
    notes: set[str] = set()
    if pg_dsn is None:
        notes.add(
            "pgvector: skipped (install flujo-memory[pgvector] and pgserver, or set "
            "FLUJO_BENCH_PGVECTOR_DSN)"
        )
    for size in (int(s) for s in args.sizes.split(",")):
        data = mixture(size, rng, centres)
        queries = mixture(args.queries, rng, centres)
        truth = exact_top10(data, queries)
        for name, make in stores(size, pg_dsn):
            if args.stores not in name:
                continue
            r = await measure(make, data, queries, truth)
            if r["note"]:
                notes.add(f"{name}: filtered searches ran as {r['note']}")
            print(
                f"{name:30} {size:>9,} {r['index_per_s']:>9,.0f} {r['p50']:>8.2f} "
                f"{r['p95']:>8.2f} {r['p50_scoped']:>10.2f} {r['p95_scoped']:>10.2f} "
                f"{r['recall']:>9.3f} {r['recall_scoped']:>7.3f}",
                flush=True,
            )
    for note in sorted(notes):
        print(note)


# ====================================================================== quality on real text


COMMON_PACKAGES = {
    "numpy", "pydantic", "httpx", "requests", "click", "rich", "jinja2", "attr", "yaml",
    "urllib3", "packaging", "pygments", "dateutil", "anyio", "tqdm", "typer", "aiohttp",
}  # fmt: skip
"""Widely used packages whose docstrings join the standard library's (when installed)."""


def stdlib_docstrings(split: str) -> list[tuple[str, str]]:
    """``(summary line, rest of the docstring)`` pairs from the stdlib's source (see the module
    docstring), deduplicated, in a stable order; ``split`` picks the tuning or held-out files."""
    import ast
    import hashlib
    import inspect
    import sysconfig

    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    skip = {"test", "tests", "testing", "idlelib", "lib2to3", "turtledemo", "_vendor", "vendor"}
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    files = [
        (path, path.relative_to(root))
        for i, root in enumerate(roots)
        for path in sorted(root.rglob("*.py"))
        if (i == 0 and not {"site-packages", "dist-packages"} & set(path.relative_to(root).parts))
        or (i == 1 and path.relative_to(root).parts[0] in COMMON_PACKAGES)
    ]
    for path, rel in files:
        if "flujo" in str(rel) or ".venv" in rel.parts:  # not our own code
            continue
        if skip & set(rel.parts):
            continue
        tune = hashlib.sha1(str(rel).encode()).digest()[0] % 5 == 0
        if tune != (split == "tune"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        nodes = [tree] + [
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        for node in nodes:
            doc = ast.get_docstring(node)  # type: ignore[arg-type]
            if not doc:
                continue
            doc = inspect.cleandoc(doc)
            summary, _, body = doc.partition("\n")
            summary, body = summary.strip(), body.strip()
            if len(summary.split()) < 4 or len(body.split()) < 12:
                continue
            if summary in seen or body in seen:  # a known item must be unique
                continue
            seen.update((summary, body))
            pairs.append((summary, body))
    return pairs


def known_items(split: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """10,000 ``(summary, body)`` pairs of the corpus and the indexes of the 500 asked."""
    pairs = stdlib_docstrings(split)
    rng = np.random.default_rng(19)
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order[:10_000]]
    asked = rng.choice(len(pairs), size=min(500, len(pairs)), replace=False)
    return pairs, asked


async def quality(split: str, pg_dsn: str | None) -> None:
    from flujo_memory import lexical
    from flujo_memory.embedders import HashingEmbedder, WordLlamaEmbedder
    from flujo_memory.stores.qdrant import QdrantEdgeStore

    pairs, asked = known_items(split)
    print(
        f"quality: {len(pairs):,} docstrings of the Python {platform.python_version()} standard "
        f"library and the installed packages ({split} files), {len(asked)} known-item queries "
        "(summary line -> rest of the docstring); store: qdrant (edge, default), and pgvector's "
        "own lexical index when a PostgreSQL with pgvector is at hand\n"
    )
    header = f"{'method':34} {'hit@10':>7} {'MRR@10':>7} {'p50 ms':>7}"
    print(header)
    print("-" * len(header))
    embedders: dict[str, Any] = {"hashing": HashingEmbedder(384), "wordllama": WordLlamaEmbedder()}
    methods = [
        ("hashing (dense, 384-d)", "qdrant", "hashing", "dense"),
        ("wordllama (dense, 256-d)", "qdrant", "wordllama", "dense"),
        ("bm25 (lexical)", "qdrant", "wordllama", "lexical"),
        ("hybrid: bm25 + wordllama (RRF, default)", "qdrant", "wordllama", "hybrid"),
    ]
    if pg_dsn is not None:
        methods += [
            ("pgvector: bm25 (lexical)", "pgvector", "wordllama", "lexical"),
            ("pgvector: hybrid bm25 + wordllama", "pgvector", "wordllama", "hybrid"),
        ]
    bodies = [b for _, b in pairs]
    built: dict[tuple[str, str], tuple[Any, Path]] = {}
    try:
        for name, kind, embedder_name, mode in methods:
            if (kind, embedder_name) not in built:
                folder = Path(tempfile.mkdtemp(prefix="flujo-quality-"))
                if kind == "pgvector" and pg_dsn is not None:
                    from flujo_memory.stores.pgvector import PgVectorStore

                    store = PgVectorStore(pg_dsn, f"quality_{uuid.uuid4().hex[:8]}")
                else:
                    store = QdrantEdgeStore(folder, "q")
                vectors = await embedders[embedder_name].embed(bodies)
                mems = [
                    Memory(id=str(i), text=b, vector=v, scope="default")
                    for i, (b, v) in enumerate(zip(bodies, vectors, strict=True))
                ]
                for start in range(0, len(mems), BATCH):
                    await store.add(mems[start : start + BATCH])
                built[kind, embedder_name] = (store, folder)
            store = built[kind, embedder_name][0]
            hits, rr, times = 0, 0.0, []
            for i in asked:
                t0 = time.perf_counter()
                [qv] = await embedders[embedder_name].embed([pairs[i][0]])
                found = await store.hybrid_search(
                    pairs[i][0], qv, 10, filter={"scope": "default"}, mode=mode
                )
                times.append((time.perf_counter() - t0) * 1000)
                ids = [h.memory.id for h in found]
                if str(i) in ids:
                    hits += 1
                    rr += 1.0 / (ids.index(str(i)) + 1)
            n = len(asked)
            print(f"{name:34} {hits / n:>7.3f} {rr / n:>7.3f} {pct(times, 50):>7.2f}", flush=True)
    finally:
        for store, folder in built.values():
            if hasattr(store, "reset") and not isinstance(store, QdrantEdgeStore):
                await store.reset()  # pgvector: drop the benchmark's table
            await store.close()
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"(BM25: k1 {lexical.K1}, b {lexical.B}, avg length {lexical.AVG_LEN:g}; RRF k "
        f"{lexical.RRF_K}, {lexical.CANDIDATES} candidates per half)\n"
    )


def distinct_paragraphs(limit: int) -> list[str]:
    """Up to ``limit`` distinct paragraphs (8 words or more) of the docstrings of every ``.py``
    file of the standard library and of every package installed beside it, read with :mod:`ast`
    (never imported), in a stable order."""
    import ast
    import inspect
    import sysconfig

    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    out: list[str] = []
    seen: set[str] = set()
    for root in dict.fromkeys(roots):
        for path in sorted(root.rglob("*.py")):
            if "flujo" in str(path.relative_to(root)):  # not our own code
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
                continue
            for node in [tree, *ast.walk(tree)]:
                if not isinstance(
                    node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                ):
                    continue
                doc = ast.get_docstring(node)
                for para in inspect.cleandoc(doc or "").split("\n\n"):
                    text = " ".join(para.split())
                    if len(text.split()) >= 8 and text not in seen:
                        seen.add(text)
                        out.append(text)
                        if len(out) == limit:
                            return out
    return out


async def speed(split: str, big: int, corpus: str = "copies") -> None:
    """The defaults of a plain install at ``big`` memories, beside same-run baselines."""
    import itertools

    from flujo_memory.embedders import WordLlamaEmbedder
    from flujo_memory.stores.qdrant import QdrantEdgeStore

    pairs, asked = known_items(split)
    bodies = [b for _, b in pairs]
    embedder = WordLlamaEmbedder()
    if corpus == "distinct":
        texts = distinct_paragraphs(big)
        big = len(texts)
        what = f"{big:,} distinct docstring paragraphs of every installed package"
    else:
        texts = [bodies[i % len(bodies)] + f" (copy {i // len(bodies)})" for i in range(big)]
        what = f"the {len(bodies):,} docstrings repeated as distinct copies"
    print(
        f"speed: the defaults of a plain install (wordllama + bm25 into qdrant edge, hybrid "
        f"search) at {big:,} memories: {what}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores\n"
    )
    # Baseline for the embedding: WordLlama's own batch embed, on the first 10,000 texts.
    sample = texts[: min(big, 10_000)]
    t0 = time.perf_counter()
    for start in range(0, len(sample), 64):
        embedder._model.embed(sample[start : start + 64])
    library_rate = len(sample) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, len(sample), 64):
        embedder.embed_sync(sample[start : start + 64])
    own_rate = len(sample) / (time.perf_counter() - t0)
    folder = Path(tempfile.mkdtemp(prefix="flujo-speed-"))
    store = QdrantEdgeStore(folder, "big")
    try:
        vectors_all: list[list[float]] = []
        t0 = time.perf_counter()
        for start in range(0, big, 64):  # [memory] batch_size: one embed + one write per batch
            chunk = texts[start : start + 64]
            vectors = await embedder.embed(chunk)
            vectors_all.extend(vectors)
            await store.add(
                [
                    Memory(id=f"m{start + j}", text=t, vector=v, scope="default")
                    for j, (t, v) in enumerate(zip(chunk, vectors, strict=True))
                ]
            )
        rate = big / (time.perf_counter() - t0)
        matrix = np.asarray(vectors_all, dtype=np.float32)
        del vectors_all
        times, scan = [], []
        for i in itertools.islice(itertools.cycle(asked), 200):
            t0 = time.perf_counter()
            [qv] = await embedder.embed([pairs[i][0]])
            await store.hybrid_search(pairs[i][0], qv, 10, filter={"scope": "default"})
            times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            scores = matrix @ np.asarray(qv, dtype=np.float32)
            top = np.argpartition(-scores, 100)[:100]
            top[np.argsort(-scores[top])]
            scan.append((time.perf_counter() - t0) * 1000)
        print(f"{'what':58} {'figure':>10} {'target':>10}")
        print("-" * 80)
        print(
            f"{'indexed, memories/s (batches of 64: embed + BM25 + write)':58} {rate:>10,.0f} "
            f"{'>= 2,000':>10}"
        )
        print(
            f"{'search p50 ms (embed query + hybrid, scope filter)':58} "
            f"{pct(times, 50):>10.2f} {'<= 10':>10}"
        )
        print(f"{'search p95 ms':58} {pct(times, 95):>10.2f}")
        print("same-run baselines:")
        print(f"{'  embedding alone, texts/s (flujo WordLlamaEmbedder)':58} {own_rate:>10,.0f}")
        print(f"{'  embedding alone, texts/s (wordllama library embed)':58} {library_rate:>10,.0f}")
        print(
            f"{'  numpy float32 exact scan of the same vectors, p50 ms':58} {pct(scan, 50):>10.2f}"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
