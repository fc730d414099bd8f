"""A run's trace id and root span id, derived from its run id.

A resumed run (after a pause, a crash, on another worker or machine) continues the trace its
first execution started: both ids are a hash of the run id, so every worker computes the same
ones without reading anything on the run's hot path. The run id is stored with the run, so
the trace id is too (``flujo runs show`` prints it). The first execution's ``run`` span has
the root span id; each resumed execution opens a ``run`` span under it, so the trace is one
tree with the paused time as a gap between them.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator


def _derived(kind: str, run_id: str, size: int) -> int:
    digest = hashlib.sha256(f"flujo-otel/{kind}/{run_id}".encode()).digest()
    value = int.from_bytes(digest[:size], "big")
    return value or 1  # zero is the invalid id in W3C trace context


def trace_id_of(run_id: str) -> int:
    """The 128-bit trace id of run ``run_id``."""
    return _derived("trace", run_id, 16)


def root_span_id_of(run_id: str) -> int:
    """The 64-bit span id of run ``run_id``'s root ``run`` span."""
    return _derived("root", run_id, 8)


def trace_id_hex(run_id: str) -> str:
    """:func:`trace_id_of` as backends show it (32 hex digits)."""
    return f"{trace_id_of(run_id):032x}"


_forced: ContextVar[tuple[int, int] | None] = ContextVar("flujo_otel_forced_ids", default=None)


class RunIdGenerator(IdGenerator):
    """Random ids, except for the root span being started under :func:`forced_ids`."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        forced = _forced.get()
        return forced[1] if forced is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        return forced[0] if forced is not None else self._random.generate_trace_id()


def forced_ids(trace_id: int, span_id: int) -> object:
    """Make the next span started in this context get these ids; pass the result to
    :func:`release` right after starting it."""
    return _forced.set((trace_id, span_id))


def release(token: object) -> None:
    """Undo :func:`forced_ids`."""
    _forced.reset(token)  # type: ignore[arg-type]
