"""The leases a worker holds on the runs it executes, kept alive by a heartbeat thread.

A run being executed is leased to one worker. The heartbeat renews the lease every third of
its length from a thread of its own, on a connection of its own: a step that blocks the event
loop (a sync function, CPU-bound work) cannot starve it. A worker that dies stops renewing,
its lease expires, and ``claim_stale`` hands the run to exactly one other worker.

A worker that was paused past its lease (SIGSTOP, a long GC pause, a partitioned network) may
find its run taken over. Two things stop it: the heartbeat marks the lease lost, so it stops
before its next step; and every write it attempts is *fenced*: the state backend checks, in
the write's own transaction, that the run is still held under this worker's :class:`Lease`
(owner and epoch), and refuses it with :class:`LeaseLostError` otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from flujo.domain.errors import LeaseLostError, StateError
from flujo.domain.interfaces import Lease, LeaseRenewer, StateBackend

__all__ = ["Heartbeat", "LeaseKeeper", "LeaseLostError", "new_worker_id"]

_log = logging.getLogger("flujo.lease")


def new_worker_id() -> str:
    """An id for this worker: host, process and a random part (unique per runner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """One run's lease, as held by this worker; :attr:`lost` once renewal found it gone.

    A lease is held from *before* the statement that takes the run (its epoch is known in
    advance): once the take lands, the heartbeat renews it even if the event loop is blocked
    before the taker learns of it. Until :attr:`taken`, a refused renewal is not a loss.
    """

    __slots__ = ("lease", "lost", "run_id", "taken")

    def __init__(self, run_id: str, lease: Lease, *, taken: bool) -> None:
        self.run_id, self.lease = run_id, lease
        self.lost = False
        self.taken = taken

    @property
    def owner(self) -> str:
        """The worker holding the lease."""
        return self.lease.owner

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was lost."""
        if self.lost:
            raise LeaseLostError(
                f"run {self.run_id}: another worker took it over (lease lost by {self.owner})"
            )


class LeaseKeeper:
    """Renews every lease one runner holds, every ``lease_s / 3``, from one daemon thread.

    The thread and its connection (``state.lease_renewer()``) start with the first lease held
    and end at :meth:`close`; holding and releasing a lease costs a dict update.
    """

    def __init__(self, state: StateBackend, lease_s: float) -> None:
        self._state, self.lease_s = state, lease_s
        self._held: dict[str, Heartbeat] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewer: LeaseRenewer | None = None

    def hold(self, run_id: str, lease: Lease, *, taken: bool = False) -> Heartbeat:
        """Keep ``lease`` on ``run_id`` alive until :meth:`release`; hold it before the take
        (``taken=False``) and set :attr:`Heartbeat.taken` once the take succeeded."""
        beat = Heartbeat(run_id, lease, taken=taken)
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("the lease keeper is closed")
            if run_id in self._held:
                raise RuntimeError(f"run {run_id} is held by this runner already")
            self._held[run_id] = beat
            if self._thread is None:
                self._renewer = self._state.lease_renewer()
                self._thread = threading.Thread(
                    target=self._beat, name="flujo-lease-heartbeat", daemon=True
                )
                self._thread.start()
        return beat

    def holds(self, run_id: str) -> bool:
        """Whether this runner is executing ``run_id`` right now."""
        with self._lock:
            return run_id in self._held

    def release(self, beat: Heartbeat) -> None:
        """Stop renewing ``beat``'s lease (its run ended, or was lost)."""
        with self._lock:
            if self._held.get(beat.run_id) is beat:
                del self._held[beat.run_id]

    def _beat(self) -> None:
        renewer = self._renewer
        assert renewer is not None
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                beats = list(self._held.values())
            for beat in beats:
                try:
                    renewed = renewer.renew(beat.run_id, beat.lease, self.lease_s)
                except StateError as exc:
                    # A database hiccup is not a lost lease yet; the next beat tries again.
                    # (Were the lease to expire meanwhile, fencing still refuses a late commit.)
                    _log.warning("run %s: lease renewal failed: %s", beat.run_id, exc)
                    continue
                if renewed:
                    beat.taken = True
                    continue
                with self._lock:
                    # Not a loss: a take not landed yet, or a run that ended (and released
                    # its lease) between the snapshot and the renewal.
                    if not beat.taken or self._held.get(beat.run_id) is not beat:
                        continue
                    beat.lost = True
                    del self._held[beat.run_id]
                _log.error("run %s: lease lost to another worker; stopping", beat.run_id)

    def close(self) -> None:
        """Stop the thread and close its connection. Idempotent."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            # Bounded: a renewal stuck on the network must not hang the runner's close.
            thread.join(timeout=self.lease_s + 15)
            if thread.is_alive():
                return
        if self._renewer is not None:
            self._renewer.close()
            self._renewer = None
