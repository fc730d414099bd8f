"""Work plugins schedule off the hot path: bounded, tracked, drained on close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_log = logging.getLogger("flujo.background")


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """A background task that raised, was cancelled at the drain deadline, or was refused."""

    name: str
    error: str
    at: float


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What :meth:`BackgroundTaskManager.drain` found."""

    completed: int
    cancelled: int
    failed: int


class BackgroundTaskManager:
    """Runs coroutines scheduled by plugins, at most ``max_concurrency`` at a time.

    ``schedule`` never blocks and never raises into the caller: a task that fails is logged and
    recorded in :attr:`failures`; when more than ``max_pending`` tasks wait, new ones are
    refused (recorded too) so a slow backend cannot exhaust memory.
    """

    def __init__(self, max_concurrency: int = 8, *, max_pending: int = 10_000) -> None:
        self.max_concurrency = max_concurrency
        self.max_pending = max_pending
        self.failures: list[TaskFailure] = []
        self.completed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def pending(self) -> int:
        """Tasks scheduled and not finished yet."""
        return len(self._tasks)

    def schedule(self, name: str, work: Callable[[], Awaitable[object]]) -> bool:
        """Run ``work()`` in the background; ``False`` if it was refused (queue full).

        Must be called from the event loop the runner uses (hooks are).
        """
        if len(self._tasks) >= self.max_pending:
            self.record_failure(name, f"refused: {self.max_pending} tasks already pending")
            return False
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        task = asyncio.get_running_loop().create_task(self._run(name, work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, name: str, work: Callable[[], Awaitable[object]]) -> None:
        assert self._semaphore is not None
        async with self._semaphore:
            try:
                await work()
            except asyncio.CancelledError:
                self.record_failure(name, "cancelled at the drain deadline")
                raise
            except (KeyboardInterrupt, GeneratorExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit never reaches the run
                self.record_failure(name, f"{type(exc).__name__}: {exc}")
                _log.debug("background task %s traceback", name, exc_info=True)
            else:
                self.completed += 1

    def record_failure(self, name: str, error: str) -> None:
        """Record (and log) a background failure; used for observer errors too."""
        self.failures.append(TaskFailure(name, error, time.time()))
        _log.warning("background task %s: %s", name, error)

    async def drain(self, timeout_s: float) -> DrainReport:
        """Wait up to ``timeout_s`` for every task (including ones scheduled meanwhile), then
        cancel what is left."""
        done_before, failed_before = self.completed, len(self.failures)
        deadline = time.monotonic() + timeout_s
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        cancelled = len(self._tasks)
        for task in list(self._tasks):
            task.cancel()
        if cancelled:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return DrainReport(
            completed=self.completed - done_before,
            cancelled=cancelled,
            failed=len(self.failures) - failed_before - cancelled,
        )
