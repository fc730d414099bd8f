"""``MemoryService``: what ``runner.services["memory"]`` and the ``flujo memory`` CLI use.

It owns the configured store and embedder (created on first use), the outbox worker, and the
scope rules: every memory carries the scope built from ``[memory] scope_fields`` and every
search is restricted to one scope in the store itself.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flujo.application.scrubbing import FINGERPRINT_PREFIX, Scrubbing
from flujo.domain.errors import ConfigError
from flujo.domain.interfaces import Memory, ScoredMemory
from flujo_memory import lexical, outbox
from flujo_memory.embedders import identity_of
from flujo_memory.errors import (
    CollectionMismatchError,
    DimensionMismatchError,
    MemoryUserError,
    ScopeRequiredError,
)
from flujo_memory.settings import SECTION, MemorySettings

if TYPE_CHECKING:
    from flujo.application.background import BackgroundTaskManager
    from flujo.application.runtime import Runtime
    from flujo.config import FlujoConfig
    from flujo.domain.context import PipelineContext
    from flujo.domain.events import StepCompleted
    from flujo.domain.interfaces import StateBackend, StepCommit
    from flujo.plugins.registry import Registry

_log = logging.getLogger("flujo_memory")
DEFAULT_SCOPE = "default"
SCOPE_META_PREFIX = "scope."
"""Metadata keys ``scope.<field>`` carry each scope value (forget by a partial scope)."""
_MAX_BACKOFF_S = 60.0
_CLAIM_S = 120.0
"""How long a claimed batch is reserved for the worker that claimed it."""
_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What :meth:`MemoryService.flush` did."""

    indexed: int = 0
    """Outbox rows now in the store."""
    failed: int = 0
    """Rows that used their last attempt during this flush (status ``failed``)."""
    pending: int = 0
    """Rows still waiting (only when the flush gave up early)."""


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """How many memories a forget removed, from the store and from the outbox."""

    store: int
    outbox: int

    @property
    def total(self) -> int:
        """Both counts together."""
        return self.store + self.outbox


@dataclass(slots=True)
class _Row:
    id: str
    run_id: str | None
    step_name: str | None
    scope: str
    text: str
    metadata: dict[str, Any]
    created_at: float
    attempts: int


@dataclass(slots=True)
class MemoryService:
    """Long-term memory for one runner (or one CLI command).

    ``registry`` creates the store and embedder named in ``[memory]``; pass ``store`` and/or
    ``embedder`` to use given objects instead. ``tasks`` (the runner's background manager)
    runs the outbox worker; without it, rows are indexed by :meth:`flush` only.

    ``scrubbing`` (the runner's ``runtime.scrubbing``, or the configured policies' for the CLI)
    keeps what a policy flags out of the store: a flagged scope value is stored and matched as
    its keyed fingerprint (``fp:...``, see :mod:`flujo.application.scrubbing` for where the
    key lives), and texts added directly (:meth:`add`) are scrubbed first.

    ``runtime`` (the runner's): its indexing batches are reported to that runner's
    operation wrappers (``memory.index``: a tracing plugin's span linked to the batch's runs),
    whichever task runs them.
    """

    config: FlujoConfig
    state: StateBackend
    registry: Registry | None = None
    tasks: BackgroundTaskManager | None = None
    store: Any = None
    embedder: Any = None
    scrubbing: Scrubbing | None = None
    runtime: Runtime | None = None
    settings: MemorySettings = field(init=False)
    errors: list[str] = field(default_factory=list)
    _collection_ok: str | None = None
    _lock: asyncio.Lock | None = None
    _kicked: bool = False
    _closed: bool = False
    _worker: str = field(default_factory=lambda: uuid.uuid4().hex)
    _claims: int = 0

    def __post_init__(self) -> None:
        self.settings = self.config.section(SECTION, MemorySettings)

    # ------------------------------------------------------------------ parts

    def validate_names(self) -> None:
        """Raise :class:`ConfigError` now if ``[memory] store``/``embedder`` are not registered."""
        if self.registry is None:
            return
        if self.store is None:
            self.registry.get("vector_stores", self.settings.store)
        if self.embedder is None:
            self.registry.get("embedders", self.settings.embedder)

    def get_store(self) -> Any:
        """The vector store (created on first use)."""
        if self.store is None:
            if self.registry is None:
                raise ConfigError("no vector store given and no plugin registry to create one")
            self.store = self.registry.create("vector_stores", self.settings.store, self.config)
        return self.store

    def get_embedder(self) -> Any:
        """The embedder (created on first use)."""
        if self.embedder is None:
            if self.registry is None:
                raise ConfigError("no embedder given and no plugin registry to create one")
            self.embedder = self.registry.create("embedders", self.settings.embedder, self.config)
        return self.embedder

    @property
    def lock(self) -> asyncio.Lock:
        """Serializes indexing, forgetting and reindexing."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # ------------------------------------------------------------------ scope

    def scope_of(self, values: Mapping[str, Any] | None) -> tuple[str, dict[str, str]]:
        """The scope string and per-field values for ``values`` (context fields or CLI
        ``--scope``). Every configured field must have a non-empty value."""
        fields = self.settings.scope_fields
        values = dict(values or {})
        if not fields:
            if values:
                raise ScopeRequiredError(
                    f"scope given ({', '.join(sorted(values))}) but [memory] scope_fields is "
                    "empty; configure the fields that make up a scope"
                )
            return DEFAULT_SCOPE, {}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ScopeRequiredError(
                f"unknown scope field(s) {', '.join(unknown)}; [memory] scope_fields = {fields}"
            )
        resolved: dict[str, str] = {}
        for name in fields:
            value = values.get(name)
            if value is None or value == "":
                raise ScopeRequiredError(
                    f"no value for scope field {name!r} ([memory] scope_fields = {fields}); "
                    "memory is never searched or written without a full scope"
                )
            resolved[name] = str(value)
        return json.dumps(resolved, sort_keys=True, separators=(",", ":")), resolved

    async def keyed(
        self, values: Mapping[str, Any] | None, context: PipelineContext | None = None
    ) -> dict[str, Any]:
        """``values`` (scope fields) with each value a policy flags replaced by its keyed
        fingerprint: what is stored, searched and forgotten by, never the value itself."""
        out = dict(values or {})
        scrubbing = self.scrubbing
        if scrubbing is None or not scrubbing.active:
            return out
        for name, value in out.items():
            if value is None or value == "":
                continue
            # By field: a resumed context's flagged field holds the stored placeholder, which
            # only the context's recorded keys tie to the customer's value.
            key = await scrubbing.key(context, value, field=name)
            if key.startswith(FINGERPRINT_PREFIX):
                out[name] = key
        return out

    async def context_scope(self, context: PipelineContext) -> dict[str, Any]:
        """The scope field values of a live context (flagged ones as fingerprints)."""
        values = {name: getattr(context, name, None) for name in self.settings.scope_fields}
        return await self.keyed(values, context)

    def event_scope(self, event: StepCompleted) -> dict[str, Any]:
        """The scope field values of a step event: the core's keys where a policy flagged the
        value (the event's context is scrubbed: ``<EMAIL>`` would put every customer in one
        scope), the snapshot's values otherwise."""
        keys = getattr(event, "context_keys", None) or {}
        values: dict[str, Any] = {}
        for name in self.settings.scope_fields:
            key = keys.get(name)
            if isinstance(key, str) and key.startswith(FINGERPRINT_PREFIX):
                values[name] = key
            else:
                values[name] = getattr(event.context, name, None)
        return values

    # ------------------------------------------------------------------ collection record

    async def _check_collection(self, dimension: int, *, create: bool) -> bool:
        """Make sure the collection was built by this embedder; ``False`` if it does not exist
        (and ``create`` is false)."""
        embedder = self.get_embedder()
        identity = identity_of(embedder, self.settings.embedder)
        if self._collection_ok == identity:
            return True
        store = self.get_store()
        get_info = getattr(store, "get_info", None)
        if get_info is None:  # a third-party store without a collection record
            self._collection_ok = identity
            return True
        info = await get_info()
        recorded = (info or {}).get("embedder")
        if recorded is not None and recorded != identity:
            raise CollectionMismatchError(
                f"collection {self.settings.collection!r} was built with embedder {recorded} "
                f"(dimension {info.get('dimension') if info else '?'}); [memory] embedder is "
                f"{identity}. Run `flujo memory reindex` to re-embed it, or set another "
                "[memory] collection"
            )
        if info is not None and int(info.get("dimension", dimension)) != dimension:
            raise DimensionMismatchError(
                f"collection {self.settings.collection!r} holds {info['dimension']}-dimension "
                f"vectors; embedder {identity} makes {dimension}-dimension vectors. Run "
                "`flujo memory reindex`, or set another [memory] collection"
            )
        if recorded is None:
            if not create and info is None:
                return False
            await store.set_info({"embedder": identity, "dimension": dimension})
        self._collection_ok = identity
        return True

    # ------------------------------------------------------------------ writing

    async def add(
        self,
        text: str,
        *,
        scope: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        step_name: str | None = None,
    ) -> Memory:
        """Embed and store one memory now (not through the outbox); return it."""
        if not text.strip():
            raise MemoryUserError("cannot remember an empty text")
        scope_str, fields = self.scope_of(await self.keyed(scope))
        if self.scrubbing is not None and self.scrubbing.active:
            text = str(await self.scrubbing.scrub(None, text))
            metadata = await self.scrubbing.scrub(None, dict(metadata or {}))
        meta = {**(metadata or {}), **{SCOPE_META_PREFIX + k: v for k, v in fields.items()}}
        row_id = outbox.memory_id(run_id, step_name, f"{scope_str}\x00{text}")
        [vector] = await self.get_embedder().embed([text])
        async with self.lock:
            await self._check_collection(len(vector), create=True)
            memory = Memory(
                id=row_id,
                text=text,
                vector=vector,
                scope=scope_str,
                run_id=run_id,
                step_name=step_name,
                metadata=meta,
                created_at=time.time(),
            )
            await self.get_store().add([memory])
        return memory

    def on_step_commit(self, event: StepCompleted, commit: StepCommit) -> None:
        """Add a successful, matching step's (scrubbed) output to the outbox, in the step's own
        commit (``flujo_step_commit``): the row exists exactly when the step's row does, on
        every state backend, whatever crashes when. Embedding happens in the background.
        """
        params = self._outbox_row(event)
        if params is not None:
            commit.add(outbox.INSERT, params)

    def on_step_completed(self, event: StepCompleted) -> None:
        """The step's commit is done: wake the indexer if its output went to the outbox."""
        from flujo.domain.models import StepStatus

        if event.step.status is StepStatus.SUCCEEDED and self._indexed(event.step.name):
            self.kick()

    def _outbox_row(self, event: StepCompleted) -> dict[str, Any] | None:
        """The outbox row of a successful, matching step, or ``None`` (recorded why when the
        scope cannot be told)."""
        from flujo.domain.models import StepStatus

        step = event.step
        if step.status is not StepStatus.SUCCEEDED or not self._indexed(step.name):
            return None
        text = _as_text(step.output)[: self.settings.max_text_chars]
        if not text.strip():
            return None
        try:
            scope, fields = self.scope_of(self.event_scope(event))
        except ScopeRequiredError as exc:
            self._record(f"step {step.name!r} of run {event.run_id} not remembered: {exc}")
            return None
        metadata = {
            "pipeline": event.pipeline_name,
            "step_index": event.index,
            **{SCOPE_META_PREFIX + k: v for k, v in fields.items()},
        }
        return {
            "id": outbox.memory_id(event.run_id, step.name, text),
            "run_id": event.run_id,
            "step_name": step.name,
            "scope": scope,
            "scope_values": json.dumps(fields, sort_keys=True),
            "text": text,
            "metadata": json.dumps(metadata, sort_keys=True, default=str),
            "created_at": time.time(),
        }

    def _indexed(self, step_name: str) -> bool:
        return any(fnmatch.fnmatchcase(step_name, g) for g in self.settings.index_steps)

    def _record(self, message: str) -> None:
        self.errors.append(message)
        if self.tasks is not None:
            self.tasks.record_failure("flujo-memory", message)
        else:
            _log.warning("%s", message)

    def kick(self) -> None:
        """Schedule the background indexer (once; it gathers rows for ``linger_ms``)."""
        if self.tasks is None or self._kicked or self._closed:
            return
        self._kicked = True
        self.tasks.schedule("flujo-memory.index", self._background)

    async def _background(self) -> None:
        await asyncio.sleep(self.settings.linger_ms / 1000)
        self._kicked = False
        await self.flush()

    async def resume(self) -> None:
        """Index rows a previous process left in the outbox (called at runner start)."""
        if await self._pending_count() > 0:
            await self.flush()

    # ------------------------------------------------------------------ the worker

    async def flush(self, *, timeout_s: float | None = None) -> FlushReport:
        """Index every pending outbox row now (read-your-writes), retrying failures with
        backoff until each row is indexed or out of attempts. Never raises for indexing
        failures: they are recorded on the row and in :attr:`errors`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        indexed = failed = 0
        while True:
            async with self.lock:
                rows = await self._due_rows()
                if rows:
                    ok, dead = await self._index(rows)
                    indexed, failed = indexed + ok, failed + dead
                    continue
            wait = await self._next_due_in()
            if wait is None:
                return FlushReport(indexed, failed, 0)
            if deadline is not None and time.monotonic() + wait > deadline:
                return FlushReport(indexed, failed, await self._pending_count())
            # Poll: rows another worker claimed disappear as soon as it has indexed them.
            await asyncio.sleep(min(wait, _POLL_S))

    async def _due_rows(self) -> list[_Row]:
        """Claim up to ``batch_size`` due rows for this worker and return them."""
        self._claims += 1
        token = f"{self._worker}:{self._claims}"
        now = time.time()
        due = "status = :s AND next_attempt_at <= :now"
        await self.state.execute(
            f"UPDATE {outbox.TABLE} SET claimed_by = :token, next_attempt_at = :until "
            f"WHERE {due} AND id IN (SELECT id FROM {outbox.TABLE} WHERE {due} "
            "ORDER BY created_at, id LIMIT :n)",
            {
                "s": outbox.PENDING,
                "now": now,
                "token": token,
                "until": now + _CLAIM_S,
                "n": self.settings.batch_size,
            },
        )
        rows = await self.state.fetch_all(
            f"SELECT id, run_id, step_name, scope, text, metadata, created_at, attempts "
            f"FROM {outbox.TABLE} WHERE claimed_by = :token AND status = :s "
            "ORDER BY created_at, id",
            {"token": token, "s": outbox.PENDING},
        )
        return [
            _Row(
                r["id"],
                r["run_id"],
                r["step_name"],
                r["scope"],
                r["text"],
                json.loads(r["metadata"]),
                float(r["created_at"]),
                int(r["attempts"]),
            )
            for r in rows
        ]

    async def _next_due_in(self) -> float | None:
        rows = await self.state.fetch_all(
            f"SELECT MIN(next_attempt_at) AS t FROM {outbox.TABLE} WHERE status = :s",
            {"s": outbox.PENDING},
        )
        t = rows[0]["t"] if rows else None
        return None if t is None else max(0.0, float(t) - time.time())

    async def _pending_count(self) -> int:
        rows = await self.state.fetch_all(
            f"SELECT COUNT(*) AS n FROM {outbox.TABLE} WHERE status = :s", {"s": outbox.PENDING}
        )
        return int(rows[0]["n"])

    def described(self) -> dict[str, str | bool | int | float]:
        """What every reported memory operation carries: the configured store and embedder
        (names, never texts or queries)."""
        return {
            "flujo.memory.store": self.settings.store,
            "flujo.memory.embedder": self.settings.embedder,
        }

    async def _index(self, rows: list[_Row]) -> tuple[int, int]:
        """:meth:`_write_batch`, reported as a ``memory.index`` operation serving the batch's
        runs (it runs in the background, apart from them)."""
        from flujo.plugin import operation

        runs = sorted({r.run_id for r in rows if r.run_id})
        attributes = {**self.described(), "flujo.memory.count": len(rows)}
        errors = len(self.errors)
        with operation("memory.index", attributes, runs=runs, runtime=self.runtime) as op:
            indexed, dead = await self._write_batch(rows)
            op.set({"flujo.memory.indexed": indexed, "flujo.memory.failed": dead})
            if len(self.errors) > errors:  # the batch failed: retried later, or given up
                op.fail(self.errors[-1])
        return indexed, dead

    async def _write_batch(self, rows: list[_Row]) -> tuple[int, int]:
        """Embed and store one batch; on failure record it on every row. Lock held."""
        try:
            vectors = await self.get_embedder().embed([r.text for r in rows])
            if len(vectors) != len(rows):
                raise DimensionMismatchError(
                    f"embedder returned {len(vectors)} vectors for {len(rows)} texts"
                )
            await self._check_collection(len(vectors[0]), create=True)
            await self.get_store().add(
                [
                    Memory(
                        id=r.id,
                        text=r.text,
                        vector=v,
                        scope=r.scope,
                        run_id=r.run_id,
                        step_name=r.step_name,
                        metadata=r.metadata,
                        created_at=r.created_at,
                    )
                    for r, v in zip(rows, vectors, strict=True)
                ]
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store/embedder failure is retried
            return 0, await self._failed(rows, f"{type(exc).__name__}: {exc}")
        ids = [r.id for r in rows]
        where, params = outbox.in_clause("id", ids)
        still = await self.state.fetch_all(f"SELECT id FROM {outbox.TABLE} WHERE {where}", params)
        await self.state.execute(f"DELETE FROM {outbox.TABLE} WHERE {where}", params)
        forgotten = sorted(set(ids) - {r["id"] for r in still})
        if forgotten:  # forgotten (by another process) while this batch was being embedded
            await self.get_store().delete(ids=forgotten)
        return len(rows) - len(forgotten), 0

    async def _failed(self, rows: list[_Row], error: str) -> int:
        dead = 0
        now = time.time()
        for r in rows:
            attempts = r.attempts + 1
            status = outbox.FAILED if attempts >= self.settings.max_attempts else outbox.PENDING
            dead += status == outbox.FAILED
            delay = min(_MAX_BACKOFF_S, self.settings.retry_base_s * 2 ** (attempts - 1))
            await self.state.execute(
                f"UPDATE {outbox.TABLE} SET attempts = :a, status = :s, next_attempt_at = :t, "
                "last_error = :e, claimed_by = NULL WHERE id = :id",
                {"a": attempts, "s": status, "t": now + delay, "e": error[:2000], "id": r.id},
            )
        self._record(
            f"indexing {len(rows)} memories failed ({dead} out of attempts): {error[:500]}"
        )
        return dead

    # ------------------------------------------------------------------ reading

    async def search(
        self,
        query: str,
        *,
        scope: Mapping[str, Any] | None = None,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredMemory]:
        """The ``limit`` memories closest to ``query`` within ``scope`` (required when
        ``[memory] scope_fields`` is set) that match the metadata ``filter``."""
        if limit < 1:
            raise MemoryUserError(f"limit must be at least 1, got {limit}")
        flt = dict(filter or {})
        for key in flt:
            if key == "scope" or key.startswith(SCOPE_META_PREFIX):
                raise ScopeRequiredError(
                    f"filter key {key!r}: the scope comes from the context (or --scope), "
                    "not from a filter"
                )
        scope_str, _ = self.scope_of(await self.keyed(scope))
        [vector] = await self.get_embedder().embed([query])
        if not await self._check_collection(len(vector), create=False):
            return []
        flt["scope"] = scope_str
        return await lexical.search_store(
            self.get_store(), self.settings.search, query, vector, limit, flt
        )

    # ------------------------------------------------------------------ forgetting

    async def forget(
        self,
        *,
        scope: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> ForgetReport:
        """Delete memories by (partial) scope, run or ids, from the store and the outbox
        (pending and failed rows), and return both counts. Exactly one selector is required."""
        given = [x for x in (scope, run_id, ids) if x]
        if len(given) != 1:
            raise MemoryUserError("forget needs exactly one of: scope, run_id, ids")
        async with self.lock:
            if scope:
                fields = {k: str(v) for k, v in (await self.keyed(scope)).items()}
                unknown = sorted(set(fields) - set(self.settings.scope_fields))
                if unknown:
                    raise ScopeRequiredError(
                        f"unknown scope field(s) {', '.join(unknown)}; [memory] scope_fields "
                        f"= {self.settings.scope_fields}"
                    )
                rows = await self.state.fetch_all(f"SELECT id, scope_values FROM {outbox.TABLE}")
                doomed = [
                    r["id"]
                    for r in rows
                    if all(json.loads(r["scope_values"]).get(k) == v for k, v in fields.items())
                ]
                n_outbox = await self._delete_rows("id", doomed)
                store_filter: dict[str, Any] = {SCOPE_META_PREFIX + k: v for k, v in fields.items()}
                n_store = await self._store_delete(filter=store_filter)
            elif run_id:
                n_outbox = await self.state.execute(
                    f"DELETE FROM {outbox.TABLE} WHERE run_id = :r", {"r": run_id}
                )
                n_store = await self._store_delete(filter={"run_id": run_id})
            else:
                id_list = list(ids or ())
                n_outbox = await self._delete_rows("id", id_list)
                n_store = await self._store_delete(ids=id_list)
        return ForgetReport(store=n_store, outbox=n_outbox)

    async def _delete_rows(self, column: str, values: Sequence[str]) -> int:
        total = 0
        for start in range(0, len(values), 500):
            where, params = outbox.in_clause(column, values[start : start + 500])
            total += await self.state.execute(f"DELETE FROM {outbox.TABLE} WHERE {where}", params)
        return total

    async def _store_delete(self, **kw: Any) -> int:
        deleted: int = await self.get_store().delete(**kw)
        return deleted

    # ------------------------------------------------------------------ admin

    async def stats(self) -> dict[str, Any]:
        """Store, embedder, collection record, memory count and outbox counts."""
        store = self.get_store()
        info = await store.get_info() if hasattr(store, "get_info") else None
        count = await store.count() if hasattr(store, "count") else None
        rows = await self.state.fetch_all(
            f"SELECT status, COUNT(*) AS n FROM {outbox.TABLE} GROUP BY status"
        )
        by_status = {r["status"]: int(r["n"]) for r in rows}
        last = await self.state.fetch_all(
            f"SELECT last_error FROM {outbox.TABLE} WHERE last_error IS NOT NULL "
            "ORDER BY next_attempt_at DESC LIMIT 1"
        )
        described = await store.describe() if hasattr(store, "describe") else {}
        return {
            "store": self.settings.store,
            "location": self.settings.url or self.settings.path,
            **described,
            "collection": self.settings.collection,
            "embedder": self.settings.embedder,
            "recorded_embedder": (info or {}).get("embedder"),
            "dimension": (info or {}).get("dimension"),
            "memories": count,
            "outbox_pending": by_status.get(outbox.PENDING, 0),
            "outbox_failed": by_status.get(outbox.FAILED, 0),
            "last_error": last[0]["last_error"] if last else None,
        }

    async def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every stored memory with the configured embedder (and re-queue failed
        outbox rows); return how many memories were re-embedded. ``progress(done, total)``
        is called after each batch."""
        store = self.get_store()
        if not hasattr(store, "scan") or not hasattr(store, "reset"):
            raise MemoryUserError(f"store {self.settings.store!r} cannot be reindexed")
        async with self.lock:
            memories = await store.scan()
            total = len(memories)
            if progress is not None:
                progress(0, total)
            vectors: list[list[float]] = []
            size = self.settings.batch_size
            embedder = self.get_embedder()
            for start in range(0, total, size):
                batch = memories[start : start + size]
                vectors.extend(await embedder.embed([m.text for m in batch]))
                if progress is not None:
                    progress(min(total, start + size) // 2, total)
            await store.reset()
            self._collection_ok = None
            if memories:
                await self._check_collection(len(vectors[0]), create=True)
                for start in range(0, total, size):
                    batch = memories[start : start + size]
                    for m, v in zip(batch, vectors[start : start + size], strict=True):
                        m.vector = v
                    await store.add(batch)
                    if progress is not None:
                        progress(total // 2 + min(total, start + size) // 2, total)
            await self.state.execute(
                f"UPDATE {outbox.TABLE} SET status = :p, attempts = 0, next_attempt_at = 0, "
                "claimed_by = NULL WHERE status = :f",
                {"p": outbox.PENDING, "f": outbox.FAILED},
            )
            if progress is not None:
                progress(total, total)
        await self.flush()
        return total

    async def close(self) -> None:
        """Close the store and the embedder's connections. Idempotent."""
        self._closed = True
        store, self.store = self.store, None
        embedder, self.embedder = self.embedder, None
        self._collection_ok = None
        if store is not None and hasattr(store, "close"):
            await store.close()
        if embedder is not None and hasattr(embedder, "aclose"):
            await embedder.aclose()

    async def flush_and_close(self) -> None:
        """What the runner does on close: index what is queued, then release the store."""
        try:
            await self.flush()
        finally:
            await self.close()


def _as_text(output: Any) -> str:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    dump = getattr(output, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    try:
        return json.dumps(output, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(output)


class MemoryRetriever:
    """Serves :meth:`PipelineContext.retrieve`: searches the asking run's scope."""

    def __init__(self, service: Callable[[], MemoryService]) -> None:
        self._service = service

    async def retrieve(
        self,
        context: PipelineContext,
        query: str,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredMemory]:
        """Memories relevant to ``query`` in the scope of ``context``."""
        from flujo.plugin import operation

        service = self._service()
        attributes = {
            **service.described(),
            "flujo.memory.limit": limit,
            "flujo.memory.query_chars": len(query),
            "flujo.memory.filtered": bool(filter),
        }
        # Part of the step asking: nested under its span by a tracing plugin (never the query).
        with operation("memory.retrieve", attributes) as op:
            hits = await service.search(
                query, scope=await service.context_scope(context), limit=limit, filter=filter
            )
            op.set({"flujo.memory.hits": len(hits)})
        return hits
