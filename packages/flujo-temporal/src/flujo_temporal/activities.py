"""The activity that executes one top-level step of a stored run, on a worker.

It drives the same runner the local engine uses (:class:`flujo.Flujo`): the step goes through
its policies, usage limits, retries, timeouts and plugin hooks, and is committed to Flujo's
state database (fenced by the run's lease) before the activity returns. A step another attempt
already committed is never executed again: its stored outcome is returned instead.

Leases: the run's lease in Flujo's state is held under the workflow's owner name between
activities, so the first attempt of the next step (on any worker) takes it over at once. A
*retried* attempt takes it under a name of its own instead: the state refuses that take while
the previous attempt's lease is live (its worker may only be slow: a step blocking the event
loop stops Temporal heartbeats, not Flujo's lease heartbeat thread), so a step is never
executed by two attempts at once; a dead worker's lease expires after ``[state] lease_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from flujo import Flujo
from flujo.domain.errors import (
    LeaseLostError,
    RunFinishedError,
    RunLeasedError,
    UserError,
)
from flujo.domain.models import RunRecord, RunStatus, Usage
from flujo_temporal.workflow import (
    CANCELLED_ACTIVITY,
    NON_RETRYABLE,
    PART_ACTIVITY,
    REOPEN_ACTIVITY,
    STEP_ACTIVITY,
    CancelArgs,
    PartArgs,
    PartOutcome,
    ReopenArgs,
    StepArgs,
    StepOutcome,
)

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import GovernancePolicy, StateBackend

# A run in one of these may execute its next step; any other status is the outcome itself.
_EXECUTABLE = (RunStatus.RUNNING, RunStatus.INTERRUPTED)


def outcome_of(run: RunRecord) -> StepOutcome:
    """What the workflow needs of a stored run: its status and where it goes on."""
    return StepOutcome(run.status.value, run.current_step, run.error)


class StepActivities:
    """The ``flujo.step`` activity with the runners it needs: one per pipeline, started on
    first use and closed by :meth:`aclose` (their background work drained)."""

    def __init__(
        self,
        config: FlujoConfig,
        *,
        policies: Sequence[GovernancePolicy] = (),
        runners: Mapping[str, Flujo[Any]] | None = None,
    ) -> None:
        self._config = config
        self._policies = list(policies)
        # Runners given by the caller (an embedded worker's own runner) are used, not closed.
        self._given = dict(runners or {})
        self._runners: dict[str, Flujo[Any]] = {}
        self._lock = asyncio.Lock()
        self.outputs: dict[str, Any] = {}
        """Final outputs of the given runners' succeeded runs, as the runner hands them back
        (through the policies' ``restore``, which may forget what it restored): the process
        that submitted those runs is this one, so the result never leaves it."""

    async def runner(self, pipeline_ref: str) -> Flujo[Any]:
        """The started runner of the pipeline at ``pipeline_ref``."""
        given = self._given.get(pipeline_ref)
        if given is not None:
            await given.start()
            return given
        async with self._lock:
            runner = self._runners.get(pipeline_ref)
            if runner is None:
                from flujo.plugin import load_target

                pipeline = load_target(pipeline_ref)
                runner = Flujo(
                    pipeline,
                    config=self._config,
                    pipeline_ref=pipeline_ref,
                    policies=self._policies,
                )
                await runner.start()
                self._runners[pipeline_ref] = runner
            return runner

    async def aclose(self) -> None:
        """Close every runner (drain its background work, close its state)."""
        runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            await runner.aclose()

    @activity.defn(name=STEP_ACTIVITY)
    async def step(self, args: StepArgs) -> StepOutcome:
        """Execute top-level step ``args.index`` of run ``args.run_id`` and commit it, unless an
        earlier attempt did; return the run's status after it."""
        try:
            return await self._step(args)
        except (RunLeasedError, LeaseLostError) as exc:
            # Another holder is live (a previous attempt still finishing) or took the run over:
            # a later attempt decides on what is then stored.
            raise ApplicationError(str(exc), type=type(exc).__name__) from None
        except UserError as exc:
            raise ApplicationError(str(exc), type=NON_RETRYABLE[0], non_retryable=True) from None

    async def _step(self, args: StepArgs) -> StepOutcome:
        runner = await self.runner(args.pipeline_ref)
        state = runner.runtime.state
        run = await state.get_run(args.run_id)
        if run is None:
            raise UserError(f"no run with id {args.run_id!r} in Flujo's state database")
        if run.status not in _EXECUTABLE:
            return outcome_of(run)  # paused, or final (this step's commit ended it)
        if run.current_step > args.index:
            # Committed by an earlier attempt whose result was lost (its worker died).
            return StepOutcome(RunStatus.RUNNING.value, run.current_step, None)
        info = activity.info()
        owner = args.owner
        if info.attempt > 1:
            owner = f"{owner.split('~')[0]}~{info.activity_id}.{info.attempt}"
        async with _heartbeating():
            try:
                result = await runner.resume_async(args.run_id, until=args.index + 1, owner=owner)
            except RunFinishedError:
                found = await state.get_run(args.run_id)
                assert found is not None
                return outcome_of(found)
        if result.status is RunStatus.RUNNING:
            return StepOutcome(result.status.value, args.index + 1, None, owner)
        if result.status is RunStatus.INTERRUPTED:
            # This worker is shutting down (SIGTERM): another attempt, elsewhere, goes on.
            raise ApplicationError(result.error or "interrupted", type="Interrupted")
        if result.status is RunStatus.SUCCEEDED and args.pipeline_ref in self._given:
            self.outputs[args.run_id] = result.output
        return StepOutcome(result.status.value, args.index, result.error)

    @activity.defn(name=REOPEN_ACTIVITY)
    async def reopen(self, args: ReopenArgs) -> StepOutcome:
        """Reopen run ``args.run_id``, ended (not succeeded) at ``args.version``, for the
        workflow resuming it: taken exactly as a local resume takes it (same checks, and the
        lease only if the run is as it was read and no live worker holds it), executing
        nothing; the workflow goes on at its first unfinished step."""
        try:
            runner = await self.runner(args.pipeline_ref)
            state = runner.runtime.state
            run = await state.get_run(args.run_id)
            if run is None:
                raise UserError(f"no run with id {args.run_id!r} in Flujo's state database")
            if run.version != args.version:
                # Changed since the resume read it: an earlier attempt of this activity
                # reopened it (its result lost), or it went on and ended. Either way the step
                # activities take it from here under their own rules, or it is the outcome.
                if run.status in _EXECUTABLE:
                    return StepOutcome(RunStatus.RUNNING.value, run.current_step, None)
                return outcome_of(run)
            if run.status in (*_EXECUTABLE, RunStatus.PAUSED):
                raise UserError(f"run {args.run_id} has not ended ({run.status.value})")
            try:
                result = await runner.resume_async(
                    args.run_id, until=run.current_step, owner=args.owner
                )
            except RunFinishedError:  # it succeeded: nothing to reopen
                found = await state.get_run(args.run_id)
                assert found is not None
                return outcome_of(found)
        except (RunLeasedError, LeaseLostError) as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__) from None
        except UserError as exc:
            raise ApplicationError(str(exc), type=NON_RETRYABLE[0], non_retryable=True) from None
        return StepOutcome(result.status.value, run.current_step, result.error)

    @activity.defn(name=PART_ACTIVITY)
    async def part(self, args: PartArgs) -> PartOutcome:
        """Execute part ``args.part`` of top-level step ``args.index`` (a branch, an item, an
        iteration, a route or router; ``None``: the whole step, finding its parts committed)
        and commit it, unless an earlier attempt did; report what the workflow decides on.

        Parts of one step running at once share the lease the step's first part took
        (``args.epoch``): a retried part joins it too, so (unlike a top-level step) a part
        whose worker only missed Temporal heartbeats may run its step in progress twice; a
        step it committed never runs again, and the join takes the lease with a new epoch,
        fencing out any such straggler before the run goes on."""
        runner = await self.runner(args.pipeline_ref)
        try:
            async with _heartbeating():
                result = await runner.execute_part_async(
                    args.run_id,
                    args.index,
                    args.part,
                    owner=args.owner,
                    enter=args.enter,
                    lease_epoch=args.epoch or None,
                    usage=None if args.usage is None else Usage.from_dict(args.usage),
                )
        except (RunLeasedError, LeaseLostError) as exc:
            # Refused: the run ended meanwhile (a sibling part failed it, a cancel), or a
            # previous attempt still holds it; the stored run says which.
            run = await runner.runtime.state.get_run(args.run_id)
            if run is not None and run.status not in _EXECUTABLE:
                return PartOutcome(run.status.value, run.current_step, run.error)
            raise ApplicationError(str(exc), type=type(exc).__name__) from None
        except UserError as exc:
            raise ApplicationError(str(exc), type=NON_RETRYABLE[0], non_retryable=True) from None
        if result.status is RunStatus.SUCCEEDED and args.pipeline_ref in self._given:
            self.outputs[args.run_id] = result.output
        outcome = PartOutcome(
            result.status.value,
            result.next_step,
            result.error,
            0 if result.lease is None else result.lease.epoch,
            result.base.to_dict(),
        )
        if (part := result.part) is not None:
            outcome.spent = part.spent.to_dict()
            outcome.paused = part.paused
            outcome.items, outcome.routes, outcome.finished = part.items, part.routes, part.finished
        return outcome

    @activity.defn(name=CANCELLED_ACTIVITY)
    async def cancelled(self, args: CancelArgs) -> StepOutcome:
        """Store run ``args.run_id`` failed, "cancelled on Temporal" (or ``args.error``: its
        workflow failed), unless it already ended. Taken under the workflow's lease owner: a
        step attempt still running is fenced out. Needs only the state database, not the
        pipeline: a pipeline the worker cannot load is a reason workflows fail."""
        try:
            runner = await self.runner(args.pipeline_ref)
        except UserError:
            from flujo.state import open_state

            state = await open_state(self._config, create=False)
            try:
                return await self._end(state, self._config.state.lease_s, args)
            finally:
                await state.close()
        return await self._end(runner.runtime.state, runner.runtime.config.state.lease_s, args)

    async def _end(self, state: StateBackend, lease_s: float, args: CancelArgs) -> StepOutcome:
        error = args.error or f"cancelled on Temporal (workflow flujo-{args.run_id})"
        outcome = await store_failed(state, lease_s, args.run_id, args.owner, error)
        if outcome is None:
            raise ApplicationError(f"run {args.run_id} changed while ending it; trying again")
        return outcome


async def store_failed(
    state: StateBackend, lease_s: float, run_id: str, owner: str, error: str
) -> StepOutcome | None:
    """Store run ``run_id`` failed with ``error`` (plus "at step N" for a cancel), unless it
    already ended; taken under the workflow's lease ``owner``, so a step attempt still running
    is fenced out. ``None``: the run changed meanwhile (try again)."""
    import json

    run = await state.get_run(run_id)
    if run is None:
        raise ApplicationError(
            f"no run with id {run_id!r}", type=NON_RETRYABLE[0], non_retryable=True
        )
    if run.status not in (*_EXECUTABLE, RunStatus.PAUSED):
        return outcome_of(run)  # it ended before the cancel reached it
    lease = await state.acquire_lease(
        run_id, owner.split("~")[0], lease_s, seen_version=run.version
    )
    if lease is None:
        return None
    if error.startswith("cancelled on Temporal"):
        error = f"{error} at step {run.current_step}"
    await state.finalize_run(
        run_id,
        RunStatus.FAILED,
        output=None,
        error=error,
        context_json=json.dumps(run.context, ensure_ascii=False, allow_nan=False),
        usage=run.usage,
        lease=lease,
    )
    return StepOutcome(RunStatus.FAILED.value, run.current_step, error)


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat the activity while the step runs, so a dead worker is noticed within the
    heartbeat timeout (and only then: a long step on a live worker is not retried)."""
    timeout = activity.info().heartbeat_timeout
    every = timeout.total_seconds() / 3 if timeout else 10.0

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
