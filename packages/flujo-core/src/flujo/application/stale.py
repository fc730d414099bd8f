"""Draining stale runs: one implementation for ``Flujo.resume_stale_async`` and
``flujo runs resume --stale`` (which resumes each claimed run with that run's own pipeline)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from flujo.domain.errors import LeaseLostError, RunFinishedError, RunLeasedError
from flujo.domain.interfaces import StateBackend

T = TypeVar("T")


async def drain_stale(
    state: StateBackend,
    worker_id: str,
    lease_s: float,
    resume: Callable[[str], Awaitable[T]],
    *,
    limit: int,
    stopped: Callable[[], bool],
    pipeline_version: str | None = None,
) -> list[T]:
    """Claim runs whose worker died (expired lease) or was stopped (``interrupted``) and
    ``resume`` each under ``worker_id``, until none is left, ``limit`` runs were resumed or
    ``stopped()`` (then no further run is claimed: a pod shutdown loses nothing).

    One claim at a time: a claimed run starts at once, so its lease never idles out while this
    worker is busy with another one. A run another worker took over, before or while this one
    ran it (its start or a commit refused), is theirs now: it is skipped and not counted.
    Returns what ``resume`` returned, in claim order; anything else it raises propagates.
    """
    done: list[T] = []
    while len(done) < limit and not stopped():
        claimed = await state.claim_stale(
            worker_id, lease_s, limit=1, pipeline_version=pipeline_version
        )
        if not claimed:
            break
        try:
            done.append(await resume(claimed[0]))
        except (RunLeasedError, RunFinishedError, LeaseLostError):
            continue
    return done
