"""The group commit of inner steps that finish together (the items of a map, the branches of
a parallel).

A step in a concurrent scope hands its commit to the run's :class:`InnerCommits` and waits
for it. The first commit of an event-loop turn starts a flush task; every commit made before
that task runs (the other scopes that were ready in the same turn) joins its batch, written
by :meth:`~flujo.domain.interfaces.InnerStepBatches.save_inner_steps` in one transaction: one
fenced update of the run row, one row per step. Nothing waits on a clock: a lone commit is
written as soon as the turn's ready tasks have had their go.

Durability is that of one commit per step: a step's commit returns only once its row is
committed, so nothing that follows a step (the next step of its scope, observers) happens
before; a batch commits entirely or not at all, so a lost lease refuses every step of it.
Commits that carry plugins' writes are written on their own (a failing write then fails its
own step only), in order with the batches around them, as the run row's usage and context
must be written in the order the steps committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from flujo.domain.interfaces import InnerRow, InnerStepBatches, StateBackend, StepWrite
from flujo.domain.models import StepResult, Usage

if TYPE_CHECKING:
    from flujo.application.lease import Heartbeat


_BATCHES: dict[type, bool] = {}
"""Whether each state backend class has ``save_inner_steps``."""


@dataclass(slots=True)
class _Pending:
    row: InnerRow
    context_json: str | None
    usage: Usage
    writes: Sequence[StepWrite]
    done: asyncio.Future[None]


class InnerCommits:
    """One run's inner-step commits (see the module's docstring)."""

    __slots__ = (
        "_batches",
        "_flusher",
        "_lease",
        "_pending",
        "_run_id",
        "_state",
        "last_context",
        "last_usage",
        "written",
    )

    def __init__(self, state: StateBackend, run_id: str, lease: Heartbeat) -> None:
        self._state = state
        batches = _BATCHES.get(type(state))
        if batches is None:  # a protocol's isinstance is slow: once per backend class
            batches = _BATCHES[type(state)] = isinstance(state, InnerStepBatches)
        self._batches = cast(InnerStepBatches, state) if batches else None
        self._run_id = run_id
        self._lease = lease
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.written = 0
        """How many writes were committed: a caller notes it to tell whether any was since."""
        self.last_usage: Usage | None = None
        """The run's usage the last committed write stored on the run row (``None``: none)."""
        self.last_context: tuple[int, str] | None = None
        """``(written, context JSON)``: the run's context the last committed write that
        stored one stored on the run row, after how many writes (``None``: none did)."""

    async def commit(
        self,
        index: int,
        step: StepResult,
        *,
        context_json: str | None,
        scope_context_json: str | None,
        usage: Usage,
        writes: Sequence[StepWrite] = (),
        alone: bool = False,
    ) -> None:
        """Commit ``step`` (as :meth:`StateBackend.save_inner_step`); return once it is.

        ``alone``: the caller knows no other step can finish with it (a step on the run's own
        context: a branch, a loop); it is written at once when nothing is queued before it.
        """
        if self._batches is None or (alone and self._flusher is None):
            await self._state.save_inner_step(
                self._run_id,
                index,
                step,
                context_json=context_json,
                scope_context_json=scope_context_json,
                usage=usage,
                lease=self._lease.lease,
                writes=writes,
            )
            self._wrote(usage, context_json)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = InnerRow(index, step, scope_context_json)
        self._pending.append(_Pending(row, context_json, usage, writes, done))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        await done

    async def drain(self) -> None:
        """Wait until every commit handed over is written (or refused): a scope cancelled
        while waiting for its commit leaves the batch it joined still being written."""
        while (flusher := self._flusher) is not None:
            await asyncio.shield(flusher)

    async def _flush(self) -> None:
        try:
            while self._pending:
                # A waiter that is gone (its scope was cancelled: the run is stopping) still
                # gets its commit: its step did finish, and what it spent is kept, as when
                # every step committed at once (the runner drains this before it stops).
                batch, self._pending = self._pending, []
                start = 0
                while start < len(batch):
                    if batch[start].writes:
                        group = batch[start : start + 1]
                    else:
                        end = start
                        while end < len(batch) and not batch[end].writes:
                            end += 1
                        group = batch[start:end]
                    start += len(group)
                    try:
                        await self._write(group)
                    except Exception as exc:  # noqa: BLE001 - each waiter raises it as its own
                        for p in group:
                            if not p.done.done():
                                p.done.set_exception(exc)
                    except BaseException:
                        for p in group:
                            p.done.cancel()
                        raise
                    else:
                        for p in group:
                            if not p.done.done():
                                p.done.set_result(None)
        finally:
            self._flusher = None
            for p in self._pending:  # only when cancelled: nothing will write these
                if not p.done.done():
                    p.done.cancel()
            self._pending = []

    async def _write(self, group: list[_Pending]) -> None:
        last = group[-1]
        if last.writes or self._batches is None:
            row = last.row
            await self._state.save_inner_step(
                self._run_id,
                row.index,
                row.step,
                context_json=last.context_json,
                scope_context_json=row.scope_context_json,
                usage=last.usage,
                lease=self._lease.lease,
                writes=last.writes,
            )
            self._wrote(last.usage, last.context_json)
            return
        # The run row as the last of these commits one after another would leave it: the
        # latest usage, and the latest context written to it (None keeps the one before).
        context_json = next(
            (p.context_json for p in reversed(group) if p.context_json is not None), None
        )
        await self._batches.save_inner_steps(
            self._run_id,
            [p.row for p in group],
            context_json=context_json,
            usage=last.usage,
            lease=self._lease.lease,
        )
        self._wrote(last.usage, context_json)

    def _wrote(self, usage: Usage, context_json: str | None) -> None:
        self.written += 1
        self.last_usage = usage
        if context_json is not None:  # None keeps the run row's context as it was
            self.last_context = (self.written, context_json)
