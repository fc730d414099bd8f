"""``pgvector``: memories in the PostgreSQL you already run (``flujo-memory[pgvector]``).

Layout, in the database ``[memory] dsn`` points at (its own tables: it may be the server of
the state database, but memories never mix with execution state):

- ``flujo_memory_collections``: one row per collection: its table, the embedder that built it
  and the vector dimension (the collection record of ``get_info``/``set_info``).
- ``flujo_mem_<collection>``: one table per collection: ``id`` (primary key: writes are
  upserts), ``embedding vector(<dimension>)``, ``text``, ``scope``, ``run_id``, ``step_name``,
  ``metadata`` (``json``: kept exactly as written, queryable with ``->>``), ``tags`` (the
  type-tagged ``key=value`` strings equality filters compare, GIN-indexed) and ``created_at``.
  An HNSW index (``vector_cosine_ops``) is created with the table, plus B-tree indexes on
  ``scope`` and ``run_id``.
- ``flujo_mem_<collection>_terms``: the lexical index, an inverted index as a table: one row
  per (word, memory) with the word's BM25 weight in that memory; primary key ``(word, id)``,
  rows deleted with their memory (``ON DELETE CASCADE``).

Opening the store runs ``CREATE EXTENSION IF NOT EXISTS vector``; a server without pgvector, or
a role that may not create it, is a one-line :class:`PgVectorExtensionError`.

**Filters are SQL** (``WHERE``), applied before ``LIMIT``, so a selective filter still returns
``limit`` memories. How a filtered query runs depends on the server's pgvector:

- 0.8 and later: the HNSW index with ``hnsw.iterative_scan = relaxed_order`` (the index scan
  goes on until ``limit`` rows pass the filter); results are re-sorted exactly, and if the scan
  stops short (``hnsw.max_scan_tuples``) the query is repeated as an exact scan.
- older servers: an **exact scan** (index scans off for that transaction: PostgreSQL finds the
  matching rows through the scope/tags indexes and sorts them by distance), because a plain
  HNSW scan filters only the ``ef_search`` candidates it found and would return too few.

Unfiltered queries use the HNSW index (``hnsw.ef_search`` = max(``ef_search``, ``limit``)).
``flujo memory stats`` says which mode the server gets (:meth:`PgVectorStore.describe`).

**Lexical and hybrid search** (``[memory] search``) rank exactly as the other stores do
(:mod:`flujo_memory.lexical`: the same words, BM25 weights and IDF), in one statement: the
postings of the query's words are read from the terms table by its primary key, each word's
IDF comes from its number of postings over the whole collection (like Qdrant's IDF), rows sum
``idf * weight``, the filter applies, and only the best ``limit`` rows are read whole. (A
``jsonb`` column with a GIN index was tried first: finding the rows was fast, but scoring
re-read every candidate row's ``jsonb`` once per query word.) Hybrid fuses that ranking with
the dense one by reciprocal rank. Collections created before this record no ``lexical`` index
in the registry and ask for ``flujo memory reindex``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from flujo.domain.interfaces import Memory, ScoredMemory
from flujo.state.dsn import redact_dsn
from flujo_memory import lexical
from flujo_memory.errors import (
    CollectionMismatchError,
    DimensionMismatchError,
    ExtraNotInstalledError,
    PgVectorExtensionError,
    StoreUnavailableError,
)
from flujo_memory.stores._common import CORE_KEYS, check_query, check_vectors, safe_key, tag

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

REGISTRY = "flujo_memory_collections"
"""The table recording every collection's table, embedder and dimension."""
TABLE_PREFIX = "flujo_mem_"
"""Collection tables are ``flujo_mem_<collection>`` (a hash is added when the name needs it)."""
MIN_VERSION = (0, 5, 0)
"""The first pgvector release with HNSW indexes."""
ITERATIVE_SINCE = (0, 8, 0)
"""The first pgvector release with iterative index scans (``hnsw.iterative_scan``)."""
HNSW_MAX_DIMENSION = 2000
"""pgvector's HNSW index takes ``vector`` columns of up to 2,000 dimensions."""
MAX_EF_SEARCH = 1000
"""The largest ``hnsw.ef_search``; a larger unfiltered ``limit`` is served by an exact scan."""

_LOCK_NAMESPACE = 0x666C6D  # "flm": advisory locks of this store (extension, registry, tables)
_WRITE_CHUNK = 250
_COLUMNS = "id, text, scope, run_id, step_name, metadata, created_at"

SearchMode = Literal["hnsw", "iterative", "exact"]


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.8.0"`` as ``(0, 8, 0)`` (non-numeric suffixes ignored)."""
    parts: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def table_name(collection: str) -> str:
    """The table of ``collection``: ``flujo_mem_<name>`` in lower case, with a hash of the
    original name appended when lower-casing or replacing characters changed it (so
    ``Bot`` and ``bot`` never share a table), always short enough for index-name suffixes."""
    base = re.sub(r"[^a-z0-9_]", "_", collection.lower())
    if base != collection or len(TABLE_PREFIX + base) > 52:
        digest = hashlib.sha1(collection.encode()).hexdigest()[:8]
        base = f"{base[:33]}_{digest}"
    return TABLE_PREFIX + base


def _tags(metadata: Mapping[str, Any]) -> list[str]:
    return [f"{safe_key(k)}={tag(v)}" for k, v in metadata.items()]


def where_clause(
    filter: Mapping[str, Any] | None, ids: Sequence[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """``filter`` (and ``ids``) as a SQL condition over a collection table, with its named
    parameters. Core keys compare their column (a non-string value matches nothing);
    metadata keys must all be among ``tags`` (type-tagged, so ``2`` is not ``"2"``)."""
    terms: list[str] = []
    params: dict[str, Any] = {}
    tags: list[str] = []
    for key, value in (filter or {}).items():
        if key in CORE_KEYS:
            if not isinstance(value, str):
                terms.append("FALSE")
                continue
            params[f"f_{key}"] = value
            terms.append(f"{key} = %(f_{key})s")
        else:
            tags.append(f"{safe_key(key)}={tag(value)}")
    if tags:
        params["f_tags"] = tags
        terms.append("tags @> %(f_tags)s::text[]")
    if ids is not None:
        params["f_ids"] = list(ids)
        terms.append("id = ANY(%(f_ids)s::text[])")
    return (" AND ".join(terms) if terms else "TRUE"), params


def _memory(row: Sequence[Any]) -> Memory:
    meta = row[5]
    if isinstance(meta, str):
        meta = json.loads(meta)
    return Memory(
        id=str(row[0]),
        text=str(row[1]),
        scope=str(row[2]),
        run_id=row[3],
        step_name=row[4],
        metadata=dict(meta or {}),
        created_at=float(row[6] or 0.0),
    )


def _lock_key(name: str) -> int:
    """A stable 32-bit advisory-lock key for ``name`` (paired with :data:`_LOCK_NAMESPACE`)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big", signed=True)


class PgVectorStore:
    """:class:`~flujo.domain.interfaces.VectorStoreProtocol` on PostgreSQL with pgvector.

    ``dsn`` is a libpq URI (``postgresql://user@host:5432/db``; the password may come from
    ``PGPASSWORD`` or ``~/.pgpass``). ``ef_search`` is the HNSW candidate list of index scans;
    ``pool_size`` the most connections this store opens. Connections are made on first use.
    """

    def __init__(
        self,
        dsn: str,
        collection: str = "flujo",
        *,
        ef_search: int = 200,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.collection = collection
        self.table = table_name(collection)
        self.terms_table = self.table + "_terms"
        self.ef_search = max(1, min(ef_search, MAX_EF_SEARCH))
        self.pool_size = max(1, pool_size)
        self.connect_timeout_s = connect_timeout_s
        self.version: tuple[int, ...] | None = None
        """The server's pgvector version, known once the store is open."""
        self.version_text: str | None = None
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._open_lock = asyncio.Lock()
        self._dimension: int | None = None
        self._hnsw = False
        self._lexical = False

    # ------------------------------------------------------------------ connection

    @property
    def where(self) -> str:
        """The server, without its password (for messages)."""
        return redact_dsn(self.dsn)

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"cannot use PostgreSQL at {self.where} ([memory] dsn): {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )

    @contextlib.asynccontextmanager
    async def _connection(
        self, *, transaction: bool = False
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection (in a transaction when asked); a lost server or an exhausted
        pool becomes :class:`StoreUnavailableError`."""
        import psycopg

        pool = await self._get_pool()
        try:
            async with pool.connection() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except psycopg.OperationalError as exc:  # PoolTimeout is one too
            raise self._unavailable(exc) from exc

    async def _get_pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is not None:
            return self._pool
        async with self._open_lock:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        try:
            import psycopg
            from pgvector.psycopg import register_vector_async
            from psycopg_pool import AsyncConnectionPool
        except ImportError as exc:
            raise ExtraNotInstalledError(
                "the 'pgvector' store needs the extra: pip install 'flujo-memory[pgvector]' "
                f"(missing {exc.name})"
            ) from exc
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s))
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            await self._bootstrap(conn)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            await conn.close()
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=max(self.connect_timeout_s, 30.0),
            configure=register_vector_async,
            name=f"flujo-memory-{self.collection}",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout_s)
        except psycopg.Error as exc:  # PoolTimeout is one too
            await pool.close()
            raise self._unavailable(exc) from exc
        return pool

    async def _bootstrap(self, conn: AsyncConnection[Any]) -> None:
        """Create the extension (if needed) and the registry; learn the pgvector version."""
        import psycopg

        version = await self._extension_version(conn)
        if version is None:
            cur = await conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            )
            if await cur.fetchone() is None:
                raise PgVectorExtensionError(
                    f"the PostgreSQL server at {self.where} has no pgvector extension "
                    "('vector' is not in pg_available_extensions): install pgvector on the "
                    "server (e.g. the postgresql-<major>-pgvector package or the "
                    "pgvector/pgvector image); flujo then runs CREATE EXTENSION itself"
                )
            try:
                async with conn.transaction():
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, _lock_key("ext"))
                    )
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege as exc:
                database = conn.info.dbname
                raise PgVectorExtensionError(
                    f"pgvector is installed on {self.where} but this role may not create the "
                    f"extension: ask a superuser to run CREATE EXTENSION vector in database "
                    f"{database!r}"
                ) from exc
            except psycopg.Error as exc:
                raise PgVectorExtensionError(
                    f"CREATE EXTENSION vector failed on {self.where}: "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from exc
            version = await self._extension_version(conn)
            if version is None:  # pragma: no cover - created a moment ago
                raise PgVectorExtensionError(f"the pgvector extension is missing on {self.where}")
        self.version_text = version
        self.version = parse_version(version)
        if self.version < MIN_VERSION:
            raise PgVectorExtensionError(
                f"pgvector {version} on {self.where} is too old: HNSW indexes need "
                f"{'.'.join(map(str, MIN_VERSION))} or later (upgrade the server's package, then "
                "ALTER EXTENSION vector UPDATE)"
            )
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, _lock_key(REGISTRY))
            )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {REGISTRY} ("
                "name TEXT PRIMARY KEY, table_name TEXT NOT NULL UNIQUE, "
                "dimension INTEGER NOT NULL, embedder TEXT, hnsw BOOLEAN NOT NULL, "
                "created_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch from now()))"
            )
            # Registries written before hybrid search lack the column: NULL = no lexical index.
            await conn.execute(f"ALTER TABLE {REGISTRY} ADD COLUMN IF NOT EXISTS lexical TEXT")

    @staticmethod
    async def _extension_version(conn: AsyncConnection[Any]) -> str | None:
        cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = await cur.fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ modes

    @property
    def iterative(self) -> bool:
        """Whether the server has iterative index scans (pgvector 0.8 or later)."""
        return self.version is not None and self.version >= ITERATIVE_SINCE

    def search_mode(self, filtered: bool, limit: int) -> SearchMode:
        """How a search runs: ``hnsw`` (index), ``iterative`` (index with iterative scan,
        filtered) or ``exact`` (every matching row compared)."""
        if not self._hnsw or limit > MAX_EF_SEARCH:
            return "exact"
        if not filtered:
            return "hnsw"
        return "iterative" if self.iterative else "exact"

    def filtered_search(self) -> str:
        """A sentence for ``flujo memory stats``: how filtered (scoped) searches run here."""
        version = self.version_text or "?"
        if self._dimension is not None and not self._hnsw:
            return (
                f"exact scan (no HNSW index: {self._dimension} dimensions > "
                f"{HNSW_MAX_DIMENSION}; pgvector {version})"
            )
        if self.iterative:
            return f"iterative index scan (hnsw.iterative_scan, pgvector {version})"
        return (
            f"exact scan (pgvector {version} has no iterative index scans; they need "
            f"{'.'.join(map(str, ITERATIVE_SINCE))})"
        )

    # ------------------------------------------------------------------ collection

    async def _lookup(self, conn: AsyncConnection[Any] | None = None) -> bool:
        """Load the collection's dimension; ``False`` when it does not exist."""
        if self._dimension is not None:
            return True
        if conn is None:
            async with self._connection() as own:
                return await self._lookup(own)
        cur = await conn.execute(
            f"SELECT dimension, hnsw, lexical FROM {REGISTRY} WHERE name = %s", (self.collection,)
        )
        row = await cur.fetchone()
        if row is None:
            return False
        self._dimension, self._hnsw = int(row[0]), bool(row[1])
        self._lexical = row[2] == lexical.LEXICAL_ID
        return True

    async def _ensure(self, dimension: int) -> None:
        """Create the collection's table and indexes (once, across processes)."""
        if await self._lookup():
            return
        from psycopg import sql

        table = sql.Identifier(self.table)
        hnsw = dimension <= HNSW_MAX_DIMENSION
        async with self._connection(transaction=True) as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                (_LOCK_NAMESPACE, _lock_key(self.collection)),
            )
            if await self._lookup(conn):
                return
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id TEXT PRIMARY KEY, embedding vector({}) NOT NULL, "
                    "text TEXT NOT NULL, scope TEXT NOT NULL, run_id TEXT, step_name TEXT, "
                    "metadata JSON NOT NULL, tags TEXT[] NOT NULL, "
                    "created_at DOUBLE PRECISION NOT NULL)"
                ).format(table, sql.Literal(dimension))
            )
            if hnsw:
                await conn.execute(
                    sql.SQL(
                        "CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops)"
                    ).format(sql.Identifier(self.table + "_hnsw"), table)
                )
            for suffix, column in (("_scope", "scope"), ("_run", "run_id")):
                await conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} ({})").format(
                        sql.Identifier(self.table + suffix), table, sql.Identifier(column)
                    )
                )
            await conn.execute(
                sql.SQL("CREATE INDEX {} ON {} USING gin (tags)").format(
                    sql.Identifier(self.table + "_tags"), table
                )
            )
            terms = sql.Identifier(self.terms_table)
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (word TEXT NOT NULL, id TEXT NOT NULL REFERENCES {} (id) "
                    "ON DELETE CASCADE, weight DOUBLE PRECISION NOT NULL, PRIMARY KEY (word, id))"
                ).format(terms, table)
            )
            await conn.execute(  # the cascade's lookups by memory id
                sql.SQL("CREATE INDEX {} ON {} (id)").format(
                    sql.Identifier(self.terms_table + "_id"), terms
                )
            )
            await conn.execute(
                f"INSERT INTO {REGISTRY} (name, table_name, dimension, hnsw, lexical) "
                "VALUES (%s, %s, %s, %s, %s)",
                (self.collection, self.table, dimension, hnsw, lexical.LEXICAL_ID),
            )
        self._dimension, self._hnsw, self._lexical = dimension, hnsw, True

    # ------------------------------------------------------------------ protocol

    async def add(self, memories: Sequence[Memory]) -> None:
        """Insert or replace ``memories`` (idempotent on ``Memory.id``)."""
        if not memories:
            return
        import numpy as np

        dimension = check_vectors(memories, self._dimension)
        await self._ensure(dimension)
        check_vectors(memories, self._dimension)
        last = {m.id: m for m in memories}  # a batch repeating an id: the last one wins
        rows = [
            (
                m.id,
                np.asarray(m.vector, dtype=np.float32),
                m.text,
                m.scope,
                m.run_id,
                m.step_name,
                json.dumps(m.metadata, separators=(",", ":"), default=str),
                _tags(m.metadata),
                float(m.created_at),
            )
            for m in last.values()
        ]
        statement = (
            f'INSERT INTO "{self.table}" (id, embedding, text, scope, run_id, step_name, '
            "metadata, tags, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, "
            "text = EXCLUDED.text, scope = EXCLUDED.scope, run_id = EXCLUDED.run_id, "
            "step_name = EXCLUDED.step_name, metadata = EXCLUDED.metadata, "
            "tags = EXCLUDED.tags, created_at = EXCLUDED.created_at"
        )
        # A collection from before hybrid search has no terms table (it asks for a reindex).
        texts = {m.id: m.text for m in last.values()} if self._lexical else {}

        async def write(chunk: list[tuple[Any, ...]]) -> None:
            async with self._connection(transaction=True) as conn, conn.cursor() as cur:
                await cur.executemany(statement, chunk)
                if texts:  # the memory and its postings commit together
                    ids = [row[0] for row in chunk]
                    await cur.execute(
                        f'DELETE FROM "{self.terms_table}" WHERE id = ANY(%s::text[])', (ids,)
                    )
                    postings = [
                        (word, i, weight)
                        for i in ids
                        for word, weight in lexical.document_terms(texts[i]).items()
                    ]
                    if postings:
                        await cur.executemany(
                            f'INSERT INTO "{self.terms_table}" (word, id, weight) '
                            "VALUES (%s, %s, %s)",
                            postings,
                        )

        # Chunks go through several connections at once: inserting into the HNSW graph is
        # CPU work of the server process, so a large batch spreads over the server's cores.
        chunks = [rows[i : i + _WRITE_CHUNK] for i in range(0, len(rows), _WRITE_CHUNK)]
        for start in range(0, len(chunks), self.pool_size):
            done = await asyncio.gather(
                *(write(c) for c in chunks[start : start + self.pool_size]),
                return_exceptions=True,
            )
            for outcome in done:  # every write has finished; raise the first failure
                if isinstance(outcome, BaseException):
                    raise outcome

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """The ``limit`` closest memories matching ``filter`` (filtered in SQL, before the
        limit; see the module docstring for how each server version runs it)."""
        if limit <= 0:
            return []
        import numpy as np

        if not await self._lookup() or self._dimension is None:
            return []
        check_query(query_vector, self._dimension)
        query = np.asarray(query_vector, dtype=np.float32)
        condition, params = where_clause(filter)
        mode = self.search_mode(bool(filter), limit)
        found = await self._query(mode, query, limit, condition, params)
        if mode == "iterative" and len(found) < limit:
            # The iterative scan stopped (hnsw.max_scan_tuples) before finding `limit`
            # matches; an exact scan settles whether there are more.
            found = await self._query("exact", query, limit, condition, params)
        return found

    async def hybrid_search(
        self,
        query_text: str,
        query_vector: Sequence[float] | None,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: lexical.SearchMode = "hybrid",
    ) -> list[ScoredMemory]:
        """``lexical``: BM25 over the ``terms`` index (see the module docstring); ``hybrid``:
        that and the dense search fused by reciprocal rank; ``dense``: :meth:`search`.
        ``filter`` restricts both halves."""
        return await lexical.fused_search(
            self.search, self._lexical_search, query_text, query_vector, limit, filter, mode
        )

    async def _lexical_search(
        self, query_text: str, limit: int, filter: Mapping[str, Any] | None
    ) -> list[ScoredMemory]:
        if not await self._lookup():
            return []
        if not self._lexical:
            raise CollectionMismatchError(
                f"the memory collection {self.collection!r} at {self.where} was built without "
                "a lexical index (before hybrid search); run `flujo memory reindex` to rebuild "
                'it, or set [memory] search = "dense"'
            )
        words = lexical.query_terms(query_text)
        if not words:
            return []
        condition, params = where_clause(filter)
        table, terms = f'"{self.table}"', f'"{self.terms_table}"'
        # Postings by primary key; IDF from the postings' counts over the whole collection (as
        # Qdrant's and the in-memory store's: a filter changes which rows rank, never how they
        # score); the filter applies before the limit; only the best rows are read whole.
        statement = (
            f"WITH hits AS MATERIALIZED (SELECT word, id, weight FROM {terms} "
            "WHERE word = ANY(%(words)s::text[])), "
            f"total AS MATERIALIZED (SELECT count(*)::float8 AS n FROM {table}), "
            "q AS (SELECT word, ln(1.0 + (n - count(*) + 0.5) / (count(*) + 0.5)) AS idf "
            "FROM hits, total GROUP BY word, n), "
            "scored AS (SELECT id, sum(q.idf * hits.weight) AS score FROM hits JOIN q "
            "USING (word) GROUP BY id), "
            f"best AS (SELECT id, scored.score FROM scored JOIN {table} USING (id) "
            f"WHERE {condition} ORDER BY scored.score DESC, id LIMIT %(k)s) "
            f"SELECT {_COLUMNS}, best.score FROM best JOIN {table} USING (id) "
            "ORDER BY best.score DESC, id"
        )
        async with self._connection() as conn:
            cur = await conn.execute(statement, {**params, "words": words, "k": limit})
            rows = await cur.fetchall()
        return [ScoredMemory(_memory(row), float(row[7])) for row in rows]

    def search_sql(self, mode: SearchMode, condition: str, limit: int) -> tuple[list[str], str]:
        """The ``SET LOCAL`` statements and the query of a search in ``mode``."""
        ef = max(self.ef_search, min(limit, MAX_EF_SEARCH))
        settings: list[str] = []
        if mode == "exact":
            # HNSW has no bitmap scans: with plain index scans off, PostgreSQL reads the
            # matching rows (through the scope/tags indexes or sequentially) and sorts them.
            settings.append("SET LOCAL enable_indexscan = off")
        else:
            settings.append(f"SET LOCAL hnsw.ef_search = {int(ef)}")  # SET binds no params
            if mode == "iterative":
                settings.append("SET LOCAL hnsw.iterative_scan = relaxed_order")
        inner = (
            f'SELECT {_COLUMNS}, embedding <=> %(q)s AS distance FROM "{self.table}" '
            f"WHERE {condition} ORDER BY embedding <=> %(q)s LIMIT %(k)s"
        )
        # relaxed_order may return index order slightly off: re-sort the materialised hits.
        query = f"WITH hits AS MATERIALIZED ({inner}) SELECT * FROM hits ORDER BY distance, id"
        return settings, query

    async def _query(
        self,
        mode: SearchMode,
        query: Any,
        limit: int,
        condition: str,
        params: Mapping[str, Any],
    ) -> list[ScoredMemory]:
        settings, statement = self.search_sql(mode, condition, limit)
        async with self._connection(transaction=True) as conn:
            for setting in settings:
                await conn.execute(setting)
            cur = await conn.execute(statement, {**params, "q": query, "k": limit})
            rows = await cur.fetchall()
        out: list[ScoredMemory] = []
        for row in rows:
            distance = float(row[7])
            score = 1.0 - distance if math.isfinite(distance) else 0.0  # zero vectors: NaN
            out.append(ScoredMemory(_memory(row), score))
        out.sort(key=lambda s: -s.score)
        return out

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete memories by id and/or filter (both must match); return how many."""
        if (ids is None and filter is None) or (ids is not None and not ids):
            return 0
        if not await self._lookup():
            return 0
        condition, params = where_clause(filter, ids)
        async with self._connection() as conn:
            cur = await conn.execute(f'DELETE FROM "{self.table}" WHERE {condition}', params)
            return max(0, cur.rowcount)

    # ------------------------------------------------------------------ ManagedStore

    async def get_info(self) -> dict[str, Any] | None:
        """The collection record (embedder and dimension), ``None`` before it exists."""
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT dimension, embedder, lexical FROM {REGISTRY} WHERE name = %s",
                (self.collection,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        info: dict[str, Any] = {"dimension": int(row[0])}
        if row[1] is not None:
            info["embedder"] = str(row[1])
        if row[2] is not None:
            info["lexical"] = str(row[2])
        return info

    async def set_info(self, info: Mapping[str, Any]) -> None:
        """Create the collection (if needed) and record its embedder."""
        dimension = int(info["dimension"])
        await self._ensure(dimension)
        if self._dimension != dimension:
            raise DimensionMismatchError(
                f"collection {self.collection!r} holds {self._dimension}-dimension vectors, "
                f"not {dimension}"
            )
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE {REGISTRY} SET embedder = %s WHERE name = %s",
                (None if info.get("embedder") is None else str(info["embedder"]), self.collection),
            )

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many memories match ``filter``."""
        if not await self._lookup():
            return 0
        condition, params = where_clause(filter)
        async with self._connection() as conn:
            cur = await conn.execute(
                f'SELECT count(*) FROM "{self.table}" WHERE {condition}', params
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def scan(self, filter: Mapping[str, Any] | None = None) -> list[Memory]:
        """Every memory matching ``filter``, without vectors, oldest first."""
        if not await self._lookup():
            return []
        condition, params = where_clause(filter)
        async with self._connection() as conn:
            cur = await conn.execute(
                f'SELECT {_COLUMNS} FROM "{self.table}" WHERE {condition} ORDER BY created_at, id',
                params,
            )
            return [_memory(row) for row in await cur.fetchall()]

    async def reset(self) -> None:
        """Drop the collection's table and its record."""
        async with self._connection(transaction=True) as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                (_LOCK_NAMESPACE, _lock_key(self.collection)),
            )
            await conn.execute(f'DROP TABLE IF EXISTS "{self.terms_table}"')
            await conn.execute(f'DROP TABLE IF EXISTS "{self.table}"')
            await conn.execute(f"DELETE FROM {REGISTRY} WHERE name = %s", (self.collection,))
        self._dimension, self._hnsw, self._lexical = None, False, False

    async def describe(self) -> dict[str, Any]:
        """What ``flujo memory stats`` adds for this store: server, table, pgvector version
        and how filtered searches run."""
        await self._get_pool()
        await self._lookup()
        return {
            "location": self.where,
            "table": self.table,
            "pgvector": self.version_text,
            "filtered_search": self.filtered_search(),
        }

    async def close(self) -> None:
        """Close the connection pool. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
