"""What every flujo-memory store shares: payload layout, typed filters, point ids, info."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from flujo.domain.interfaces import Memory
from flujo_memory.errors import DimensionMismatchError

CORE_KEYS = ("scope", "run_id", "step_name")
"""Filter keys that address a :class:`Memory` field; every other key addresses metadata."""

_NAMESPACE = uuid.UUID("5f0c1e4a-3b7d-4a5e-9c1d-6f1e2a3b4c5d")


@runtime_checkable
class ManagedStore(Protocol):
    """What flujo-memory's own stores add to ``VectorStoreProtocol`` (used when present).

    ``get_info``/``set_info`` keep the collection's record (embedder and dimension);
    ``count`` and ``scan`` serve ``stats``, ``forget`` and ``reindex``; ``reset`` drops the
    collection; ``close`` releases files and connections.
    """

    async def get_info(self) -> dict[str, Any] | None:
        """The collection's record, or ``None`` when the collection does not exist yet."""
        ...

    async def set_info(self, info: Mapping[str, Any]) -> None:
        """Create the collection (if needed) and store its record."""
        ...

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """How many memories match ``filter`` (all when ``None``)."""
        ...

    async def scan(self, filter: Mapping[str, Any] | None = None) -> list[Memory]:
        """Every memory matching ``filter``, without vectors."""
        ...

    async def reset(self) -> None:
        """Delete the collection and everything in it."""
        ...

    async def close(self) -> None:
        """Release resources. Idempotent."""
        ...


def point_id(memory_id: str) -> str:
    """The UUID a memory id is stored under (Qdrant ids must be integers or UUIDs)."""
    return str(uuid.uuid5(_NAMESPACE, memory_id))


def tag(value: Any) -> str:
    """A type-tagged, exactly comparable string for a metadata value.

    Equality filters compare these, so ``2``, ``"2"``, ``2.0`` and ``True`` stay distinct.
    """
    if value is None:
        return "n:"
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        return f"f:{value!r}"
    if isinstance(value, str):
        return f"s:{value}"
    return "j:" + json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def safe_key(key: str) -> str:
    """A payload key that is a plain identifier whatever ``key`` contains (dots, colons...)."""
    return "k" + hashlib.sha1(key.encode()).hexdigest()[:16]


def to_payload(memory: Memory) -> dict[str, Any]:
    """The stored payload of ``memory``: flat, so it converts quickly into the engine.

    Its fields, its metadata as JSON text (``meta``: types kept on the way back) and, per
    metadata key, the tagged copy filters compare (``f_<safe key>``).
    """
    payload: dict[str, Any] = {
        "id": memory.id,
        "text": memory.text,
        "scope": memory.scope,
        "run_id": memory.run_id,
        "step_name": memory.step_name,
        "created_at": memory.created_at,
        "meta": json.dumps(memory.metadata, separators=(",", ":"), default=str),
    }
    for key, value in memory.metadata.items():
        payload["f_" + safe_key(key)] = tag(value)
    return payload


def from_payload(payload: Mapping[str, Any], vector: list[float] | None = None) -> Memory:
    """The :class:`Memory` a stored payload describes."""
    meta = payload.get("meta")
    return Memory(
        id=str(payload["id"]),
        text=str(payload.get("text", "")),
        vector=vector,
        scope=str(payload.get("scope", "default")),
        run_id=payload.get("run_id"),
        step_name=payload.get("step_name"),
        metadata=dict(json.loads(meta)) if isinstance(meta, str) else {},
        created_at=float(payload.get("created_at") or 0.0),
    )


def filter_terms(filter: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``filter`` as ``(payload path, tagged or plain string)`` equality terms.

    Core keys compare their plain string (``None`` matches nothing); metadata keys compare
    tagged values under ``f_<safe key>``.
    """
    terms: list[tuple[str, str]] = []
    for key, value in (filter or {}).items():
        if key in CORE_KEYS:
            terms.append((key, value if isinstance(value, str) else "\x00" + tag(value)))
        else:
            terms.append((f"f_{safe_key(key)}", tag(value)))
    return terms


def matches(memory: Memory, filter: Mapping[str, Any] | None) -> bool:
    """Whether ``memory`` matches ``filter`` (same rules as the stores' native filters)."""
    for key, value in (filter or {}).items():
        if key in CORE_KEYS:
            if not isinstance(value, str) or getattr(memory, key) != value:
                return False
        elif key not in memory.metadata or tag(memory.metadata[key]) != tag(value):
            return False
    return True


def check_vectors(memories: Sequence[Memory], dimension: int | None) -> int:
    """The common dimension of ``memories``' vectors; raise on a missing, ragged or
    mismatched vector, or a non-finite value."""
    for memory in memories:
        if memory.vector is None:
            raise DimensionMismatchError(f"memory {memory.id!r} has no vector; embed it first")
        size = len(memory.vector)
        if dimension is None:
            dimension = size
        if size != dimension:
            raise DimensionMismatchError(
                f"memory {memory.id!r} has a {size}-dimension vector; the collection holds "
                f"{dimension}-dimension vectors"
            )
        if not math.isfinite(sum(memory.vector)):  # NaN and infinities propagate
            raise DimensionMismatchError(f"memory {memory.id!r} has a non-finite vector value")
    if dimension is None:
        raise DimensionMismatchError("no vectors given")
    return dimension


def check_query(query_vector: Sequence[float], dimension: int) -> None:
    """Raise :class:`DimensionMismatchError` when the query's length is not ``dimension``."""
    if len(query_vector) != dimension:
        raise DimensionMismatchError(
            f"query vector has {len(query_vector)} dimensions; the collection holds "
            f"{dimension}-dimension vectors"
        )
