"""Stopping runs cleanly on request (Ctrl-C, SIGTERM): between steps, or by cancelling a step
that can be cancelled.

What happens to the step in progress depends on its kind:

- a **sync callable** (``Step.from_callable`` of a plain function, on the event loop or in a
  thread with ``timeout_s``) cannot be interrupted safely (Python cannot stop a thread, and an
  exception injected mid-way would leave its side effects half done): it **finishes**, its
  result is committed, and the run stops before the next step. It may end early on its own by
  checking :func:`stop_requested`;
- an **async callable** or an **agent** is **cancelled** (``CancelledError`` at its next
  ``await``): nothing of it is committed, and it runs again, from its start, on resume. An
  agent with ``cancel_on_stop = False`` finishes instead, like a sync callable.

Either way the run is stored ``interrupted`` with its lease released, so
``flujo runs resume ID`` continues it at once (and ``flujo runs resume --stale`` picks it up).
"""

from __future__ import annotations

import asyncio
import contextvars
import signal

_current: contextvars.ContextVar[StopRequest | None] = contextvars.ContextVar(
    "flujo_stop_request", default=None
)


def stop_requested() -> bool:
    """True once the run this code is a step of was asked to stop (Ctrl-C, SIGTERM).

    A long sync step may check it and return early; its result is committed as usual and the
    run stops before the next step.
    """
    stop = _current.get()
    return stop is not None and stop.requested


class StopRequest:
    """A runner's request to stop: set from a signal handler or any thread, read by the step
    loop, which stops before the next step and cancels a cancellable step in progress.

    No lock: a signal handler may run on the loop's own thread between any two bytecodes. Each
    side writes its own field before reading the other's, so at least one of them cancels.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        """The signal that asked to stop (``SIGINT`` when asked without one)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None  # a cancellable step's task, running
        self._cancelled: asyncio.Task[object] | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.signum is not None

    @property
    def reason(self) -> str:
        """``SIGINT``, ``SIGTERM``, ...: what asked to stop."""
        return signal.Signals(self.signum or signal.SIGINT).name

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask to stop. Safe from a signal handler and from any thread; idempotent."""
        if self.signum is None:
            self.signum = signum
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_step)

    def bind(self) -> contextvars.Token[StopRequest | None]:
        """Make this request the current one (for :func:`stop_requested`) in this context."""
        return _current.set(self)

    @staticmethod
    def unbind(token: contextvars.Token[StopRequest | None]) -> None:
        """Undo :meth:`bind`."""
        _current.reset(token)

    def step_started(self, cancellable: bool) -> None:
        """Called on the loop as a step starts: a cancellable one is cancelled on request."""
        task = asyncio.current_task() if cancellable else None
        self._loop = asyncio.get_running_loop()
        self._task = task
        if task is not None and self.requested:
            self._cancel_step()

    def step_finished(self) -> None:
        """Called on the loop as the step ends (returned, failed or cancelled)."""
        self._task = None

    def _cancel_step(self) -> None:
        # On the loop: the step can only be the one still registered, never a later await.
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._cancelled = task
            task.cancel(f"flujo: stop requested ({self.reason})")

    def claim_cancellation(self) -> bool:
        """True if the ``CancelledError`` the current task just caught is this request's (then
        it is consumed: the task goes on to store the interruption)."""
        if self._cancelled is None:  # the common case, at the end of every step
            return False
        task = asyncio.current_task()
        if task is None or task is not self._cancelled:
            return False
        self._cancelled = None
        task.uncancel()
        return True
