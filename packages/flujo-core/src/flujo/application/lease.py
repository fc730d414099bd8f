"""The lease a worker holds on a running run, kept alive by a heartbeat.

A run being executed is leased to one worker. The heartbeat renews the lease every third of
its length; a worker that dies stops renewing, its lease expires, and ``claim_stale`` hands
the run to exactly one other worker. A worker whose renewal fails has lost the run (it was
claimed by another, e.g. after a long pause): it stops before its next step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from flujo.domain.errors import StateError
from flujo.domain.interfaces import StateBackend

_log = logging.getLogger("flujo.lease")


class LeaseLostError(StateError):
    """Another worker took over this run; this worker must stop working on it."""


def new_worker_id() -> str:
    """An id for this worker: host, process and a random part (unique per runner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Renews ``owner``'s lease on ``run_id`` until stopped; :attr:`lost` once it fails."""

    def __init__(self, state: StateBackend, run_id: str, owner: str, lease_s: float) -> None:
        self.state, self.run_id, self.owner, self.lease_s = state, run_id, owner, lease_s
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin renewing in the background."""
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                renewed = await self.state.renew_lease(self.run_id, self.owner, self.lease_s)
            except StateError as exc:
                # A database hiccup is not a lost lease yet; the next beat tries again.
                _log.warning("run %s: lease renewal failed: %s", self.run_id, exc)
                continue
            if not renewed:
                self.lost = True
                _log.error("run %s: lease lost to another worker; stopping", self.run_id)
                return

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was lost."""
        if self.lost:
            raise LeaseLostError(
                f"run {self.run_id}: another worker took it over (lease lost by {self.owner})"
            )

    async def stop(self) -> None:
        """Stop renewing (the run is finalized, which releases the lease)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
