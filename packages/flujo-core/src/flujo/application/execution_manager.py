"""Runs a pipeline's steps in order, persisting each result before the next step starts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flujo.application._maybe_await import maybe_await
from flujo.application.control_flow import (
    Part,
    RunEnv,
    _Elsewhere,
    current_run,
    done_steps,
    enter_run,
    leave_run,
)
from flujo.application.scrubbing import Scrubbing, split_stored_context, stored_form
from flujo.application.step_coordinator import StepCoordinator, describe_error
from flujo.application.step_wrappers import StepWrappers
from flujo.domain.errors import UnstorableValueError
from flujo.domain.events import (
    ContextSnapshot,
    RunFinalized,
    RunStarted,
    StepCompleted,
    StepStarted,
)
from flujo.domain.interfaces import StepCommit, StepWrite
from flujo.domain.models import (
    Pipeline,
    PipelineResult,
    RunRecord,
    RunStatus,
    Step,
    StepResult,
    StepStatus,
    Usage,
    UsageLimits,
)
from flujo.state._rows import dumps, dumps_stored, loads, storable_text

if TYPE_CHECKING:
    from types import TracebackType

    import pluggy

    from flujo.application.interrupt import StopRequest
    from flujo.application.lease import Heartbeat
    from flujo.application.runtime import Runtime
    from flujo.domain.context import PipelineContext


def _methods(policies: Sequence[object], name: str) -> list[Callable[..., Any]]:
    found = (getattr(p, name, None) for p in policies)
    return [m for m in found if callable(m)]


class _StepCancelled(Exception):
    """The step in progress was cancelled by a stop request (not by anyone else)."""


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, UnstorableValueError) else describe_error(exc)


_RUN_STATUS = {
    StepStatus.FAILED: RunStatus.FAILED,
    StepStatus.BLOCKED: RunStatus.BLOCKED,
    StepStatus.LIMIT_EXCEEDED: RunStatus.LIMIT_EXCEEDED,
    StepStatus.PAUSED: RunStatus.PAUSED,
}


class ExecutionManager:
    """Drives one pipeline for a runner: step loop, persistence, events."""

    def __init__(
        self,
        pipeline: Pipeline,
        runtime: Runtime,
        coordinator: StepCoordinator,
        limits: UsageLimits | None,
    ) -> None:
        self.pipeline = pipeline
        self.runtime = runtime
        self.coordinator = coordinator
        self.limits = limits
        plugins = runtime.plugins
        idle = runtime.idle_plugins

        def active(hook: str) -> list[pluggy.HookImpl]:
            return [i for i in plugins.implementations(hook) if i.plugin_name not in idle]

        # Looked up once: with no observers installed (or only idle ones, see
        # Runtime.idle_plugins) the hot path makes no hook calls and builds no events.
        self._step_observers = active("flujo_step_completed")
        self._run_observers = active("flujo_run_finalized")
        self._run_start_observers = active("flujo_run_started")
        self._step_start_observers = active("flujo_step_started")
        self._step_wrappers = active("flujo_wrap_step")
        self._step_committers = active("flujo_step_commit")
        self.operation_wrappers = active("flujo_wrap_operation")
        """Called by :func:`flujo.plugin.operation` for operations done in this runner's runs."""
        self.scrubbing: Scrubbing = runtime.scrubbing
        if not self.scrubbing.active:
            # A runtime built without the runner (tests, embedders): the coordinator's policies.
            self.scrubbing = Scrubbing(coordinator.policies, runtime.config)
        self._scrubbers = self.scrubbing.active
        self._restorers = _methods(coordinator.policies, "restore")

    async def scrub(self, context: PipelineContext, value: Any) -> Any:
        """``value`` as it may leave the process (:meth:`Scrubbing.scrub`): its stored JSON
        form through every active policy's ``scrub``.

        Applied to everything persisted (run input, step outputs and errors, context, final
        output) and to every payload handed to other plugins. Without scrubbing policies it
        returns ``value`` itself, at no cost.
        """
        return await self.scrubbing.scrub(context, value)

    async def _stored_context(self, context: PipelineContext) -> tuple[Any, Any]:
        """The context's stored form, before and after scrubbing."""
        raw = stored_form(context)
        scrubbed = await self.scrub(context, raw)
        return raw, self.scrubbing.with_keys(raw, scrubbed, context._stored_keys)

    def _snapshot(self, context: PipelineContext, raw: Any, scrubbed: Any) -> ContextSnapshot:
        """What observers get instead of the live context, from its stored form before
        (``raw``) and after (``scrubbed``) scrubbing, built when a plugin first reads it: a
        copy holding the scrubbed stored form (not validated again: a scrubbed value need not
        fit its field's type), and the :meth:`Scrubbing.keys_of` its scalar fields."""
        return ContextSnapshot(lambda: self._built_snapshot(context, raw, scrubbed))

    def _built_snapshot(
        self, context: PipelineContext, raw: Any, scrubbed: Any
    ) -> tuple[PipelineContext, dict[str, str]]:
        fields, _ = split_stored_context(scrubbed if isinstance(scrubbed, dict) else {})
        snapshot = type(context).model_construct(**fields)
        # Read here, not when the event is made (a pydantic private attribute costs µs): a
        # context's resumed keys are set when it is loaded and never change during its run.
        held = context._stored_keys
        keys = self.scrubbing.keys_of(raw, fields, held) if isinstance(raw, dict) else {}
        return snapshot, keys

    async def _snapshot_now(self, context: PipelineContext) -> ContextSnapshot:
        """:meth:`_snapshot` of the context as it is now (a run or a step about to start).

        Only its stored form is taken now (the step may change the live context before a
        plugin reads the snapshot); with scrubbing policies that are all synchronous, their
        ``scrub`` of it waits for the first read too. An ``async`` scrub cannot run inside a
        property read, so then it runs here."""
        raw = stored_form(context)
        if not self._scrubbers:
            return self._snapshot(context, raw, raw)
        scrubbing = self.scrubbing
        if not scrubbing.synchronous:
            return self._snapshot(context, raw, await self.scrub(context, raw))

        def build() -> tuple[PipelineContext, dict[str, str]]:
            return self._built_snapshot(context, raw, scrubbing.scrub_now(context, raw))

        return ContextSnapshot(build)

    async def _scrubbed_step(self, context: PipelineContext, result: StepResult) -> StepResult:
        if not self._scrubbers:
            return result
        return replace(
            result,
            output=await self.scrub(context, result.output),
            error=await self.scrub(context, result.error),
        )

    async def execute(
        self,
        run: RunRecord,
        context: PipelineContext,
        *,
        start: int,
        data: Any,
        previous: list[StepResult],
        lease: Heartbeat,
        stop: StopRequest | None = None,
        until: int | None = None,
        part: Part | None = None,
    ) -> PipelineResult:
        """:meth:`_execute` with the run current for the control-flow steps in it (their inner
        steps commit under its lease; a resumed run's committed ones are not run again).

        With ``part``, only that part of the control-flow step at ``start`` runs (see
        :class:`~flujo.application.control_flow.Part`): once it is committed, or when the
        execution reaches what another part executes, the result's status is ``running`` and
        the run is left as it is (unless the part failed: then the run fails as always)."""
        env = RunEnv(self, run, lease, run.usage, done_steps(run), part)
        token = enter_run(env)
        try:
            return await self._execute(
                run,
                context,
                start=start,
                data=data,
                previous=previous,
                lease=lease,
                stop=stop,
                until=until,
            )
        except _Elsewhere:  # raised only with a part: it is done, the run goes on elsewhere
            return PipelineResult(run.run_id, RunStatus.RUNNING, None, previous, run.usage)
        finally:
            leave_run(token)

    async def _execute(
        self,
        run: RunRecord,
        context: PipelineContext,
        *,
        start: int,
        data: Any,
        previous: list[StepResult],
        lease: Heartbeat,
        stop: StopRequest | None = None,
        until: int | None = None,
    ) -> PipelineResult:
        """Run steps ``start..`` of the pipeline on ``data`` and finalize the run.

        With ``until``, stop before step ``until`` instead: the run is not finalized (it stays
        ``running`` under ``lease``, for an engine to continue it) and the result's status is
        ``running``.

        With a ``stop`` request that is (or becomes) set, the run stops before its next step,
        or during a step that can be cancelled, and is stored ``interrupted``
        (:mod:`flujo.application.interrupt`).

        Every write is made under ``lease``. A run whose lease was lost to another worker
        stops before its next step, and a write under a lost lease is refused by the state
        backend; both raise :class:`~flujo.domain.errors.LeaseLostError`, and the run is left
        to its new owner.
        """
        state = self.runtime.state
        usage = run.usage
        steps = list(previous)
        stored_steps = list(previous)  # what the database holds: scrubbed
        status = RunStatus.SUCCEEDED
        error: str | None = None
        # A run stored for an engine, nothing executed (``until <= start``), has not started.
        if self._run_start_observers and (until is None or start < until):
            started = RunStarted(
                run.run_id,
                run.pipeline_name,
                start,
                await self.scrub(context, data),
                await self._snapshot_now(context),
                # A created run holds the lease's first epoch; every take (resume) bumps it.
                # A run an engine drives is created without executing, so its first take
                # (epoch 2: nothing can write without the lease in between) is its start.
                resumed=lease.lease.epoch > (2 if run.engine is not None else 1),
            )
            self._observed(
                self.runtime.plugins.notify(
                    self._run_start_observers, event=started, runtime=self.runtime
                )
            )
        committed_context: str | None = None  # the context JSON of the last commit
        env = current_run()
        for index in range(start, len(self.pipeline.steps)):
            lease.check()
            if until is not None and index >= until:
                return PipelineResult(run.run_id, RunStatus.RUNNING, None, stored_steps, usage)
            step = self.pipeline.steps[index]
            if stop is not None and stop.requested:
                return await self._interrupted(
                    run, index, stop, stored_steps, usage, committed_context, lease
                )
            written = env.commits.written if env is not None else 0
            try:
                if self._step_start_observers or self._step_wrappers:
                    async with self._step_hooks(run, index, step, data, context):
                        result = await self._run_step(step, data, context, run.run_id, usage, stop)
                else:  # the hot path: no context manager to enter when no plugin asks for one
                    result = await self._run_step(step, data, context, run.run_id, usage, stop)
            except _StepCancelled:
                assert stop is not None  # only a stop request cancels a step this way
                if env is not None and env.commits.written > written:
                    # The construct's inner steps stored the run's total and (on the run's
                    # own context) its context as they committed, its scopes drained before
                    # the cancel came here: the run row keeps the last of them, not what it
                    # held before the step (the resume skips those steps).
                    commits = env.commits
                    assert commits.last_usage is not None
                    usage = commits.last_usage
                    if commits.last_context is not None and commits.last_context[0] > written:
                        committed_context = commits.last_context[1]
                return await self._interrupted(
                    run, index, stop, stored_steps, usage, committed_context, lease, cancelled=True
                )
            usage.add(result.usage)
            if env is not None and env.found:
                # A construct's row also holds what it found committed (counted already).
                result = env.row_usage(step.name, result)
            (
                result,
                persisted,
                (raw_context, stored_context),
                committed_context,
            ) = await self._checked_for_commit(step.name, context, result, run, committed_context)
            steps.append(result)
            stored_steps.append(persisted)
            event: StepCompleted | None = None
            writes: Sequence[StepWrite] = ()
            if self._step_observers or self._step_committers:
                event = StepCompleted(
                    run.run_id,
                    run.pipeline_name,
                    index,
                    persisted,
                    await self.scrub(context, data),
                    self._snapshot(context, raw_context, stored_context),
                    step.tags,
                )
                writes = self._step_writes(event)
            await state.save_step(
                run.run_id,
                index,
                persisted,
                context_json=committed_context,
                usage=usage,
                lease=lease.lease,
                writes=writes,
            )
            if self._step_observers and event is not None:
                self._observed(
                    self.runtime.plugins.notify(
                        self._step_observers, event=event, runtime=self.runtime
                    )
                )
            if result.status is not StepStatus.SUCCEEDED:
                status = _RUN_STATUS[result.status]
                error = result.error
                break
            data = result.output
        output = data if status is RunStatus.SUCCEEDED else None
        return await self.persist_and_finalize(
            run,
            context,
            status,
            output,
            error,
            steps,
            stored_steps,
            usage,
            lease,
            committed_context,
        )

    async def _run_step(
        self,
        step: Step,
        data: Any,
        context: PipelineContext,
        run_id: str,
        usage: Usage,
        stop: StopRequest | None,
    ) -> StepResult:
        if stop is None:
            return await self.coordinator.execute_step(
                step, data, context, run_id=run_id, run_usage=usage, limits=self.limits
            )
        # Sync callables finish (a thread cannot be stopped safely); async ones are cancelled.
        stop.step_started(getattr(step.agent, "cancel_on_stop", True))
        try:
            return await self.coordinator.execute_step(
                step, data, context, run_id=run_id, run_usage=usage, limits=self.limits
            )
        except asyncio.CancelledError:
            if stop.claim_cancellation():
                raise _StepCancelled from None
            raise
        finally:
            stop.step_finished()
            stop.claim_cancellation()  # a step that swallowed our cancel: consume it

    async def _interrupted(
        self,
        run: RunRecord,
        index: int,
        stop: StopRequest,
        steps: list[StepResult],
        usage: Usage,
        committed_context: str | None,
        lease: Heartbeat,
        *,
        cancelled: bool = False,
    ) -> PipelineResult:
        """Store the run ``interrupted`` at step ``index`` with its lease released (a fenced
        write, like a finished run's): resuming it starts at that step (a cancelled one runs
        again from its start).

        Not a finalized run: run observers (evaluations, ...) are not told.
        """
        where = "during" if cancelled else "before"
        name = self.pipeline.steps[index].name
        error = (
            f"interrupted by {stop.reason} {where} step {name!r} "
            f"({index + 1} of {len(self.pipeline.steps)})"
        )
        await self.runtime.state.finalize_run(
            run.run_id,
            RunStatus.INTERRUPTED,
            output=None,
            error=error,
            context_json=committed_context or dumps(run.context),
            usage=usage,
            lease=lease.lease,
        )
        return PipelineResult(run.run_id, RunStatus.INTERRUPTED, None, steps, usage, error)

    async def _checked_for_commit(
        self,
        name: str,
        context: PipelineContext,
        result: StepResult,
        run: RunRecord,
        committed_context: str | None,
    ) -> tuple[StepResult, StepResult, tuple[Any, Any], str]:
        """Produce what the step's commit stores *before* committing: ``(result, what to
        store, (raw, scrubbed) context, context JSON)`` (the context's forms only when step
        observers need them).

        An output or context that cannot be stored (no strict JSON form, see
        :func:`~flujo.state._rows.dumps`, or a scrub that fails on it) fails this step here,
        with the last stored context, so the run ends ``failed``: it is never left ``running``
        for recovery to execute the step again. Error text is stored escaped.
        """
        problem: str | None = None
        scrubbers = self._scrubbers  # none: the stored forms are the values themselves
        try:
            persisted = await self._scrubbed_step(context, result) if scrubbers else result
            dumps(persisted.output)
        except Exception as exc:  # noqa: BLE001 - whatever stops the commit fails the step
            problem = f"the output of step {name!r} cannot be stored: {_why(exc)}"
            persisted = result
        try:
            if scrubbers:
                raw, scrubbed = await self._stored_context(context)
                context_json = dumps(scrubbed)
            elif self._step_observers or self._step_committers:  # both get the event
                raw = scrubbed = stored_form(context)
                context_json = dumps(scrubbed)
            else:  # only the text is needed: encoded in one pass
                raw = scrubbed = None
                context_json = dumps_stored(context)
        except Exception as exc:  # noqa: BLE001 - as above
            problem = problem or f"the context after step {name!r} cannot be stored: {_why(exc)}"
            context_json = committed_context or dumps(run.context)
            raw, scrubbed = None, loads(context_json)
        if problem is not None:
            problem = storable_text(problem)
            result = replace(result, status=StepStatus.FAILED, output=None, error=problem)
            persisted = replace(persisted, status=StepStatus.FAILED, output=None, error=problem)
        elif result.error is not None:
            result = replace(result, error=storable_text(result.error))
            persisted = replace(persisted, error=storable_text(persisted.error))
        return result, persisted, (raw, scrubbed), context_json

    async def persist_and_finalize(
        self,
        run: RunRecord,
        context: PipelineContext,
        status: RunStatus,
        output: Any,
        error: str | None,
        steps: list[StepResult],
        stored_steps: list[StepResult],
        usage: Usage,
        lease: Heartbeat,
        committed_context: str | None = None,
    ) -> PipelineResult:
        """Write the final run row, then let plugins observe the finished run.

        ``committed_context`` is the context JSON of the last step's commit, stored again as
        is (a context that could not be stored failed that step).

        What is stored and observed is scrubbed, and so are the error and the step results the
        caller gets; only the final output comes back through every active policy's
        ``restore`` (e.g. pseudonyms swapped back for the original values).
        """
        stored_error = storable_text(await self.scrub(context, error))
        if committed_context is None:
            try:
                committed_context = dumps((await self._stored_context(context))[1])
            except Exception:  # noqa: BLE001 - keep the context as it was stored last
                committed_context = dumps(run.context)
        try:
            stored_output = await self.scrub(context, output)
            dumps(stored_output)
        except Exception as exc:  # noqa: BLE001 - checked at the step's commit; fail, not hang
            status, output, stored_output = RunStatus.FAILED, None, None
            error = stored_error = storable_text(f"the run's output cannot be stored: {_why(exc)}")
        await self.runtime.state.finalize_run(
            run.run_id,
            status,
            output=stored_output,
            error=stored_error,
            context_json=committed_context,
            usage=usage,
            lease=lease.lease,
        )
        if self._run_observers and status is not RunStatus.PAUSED:  # paused is not final
            run.status, run.output, run.error = status, stored_output, stored_error
            run.usage = usage
            run.context = loads(committed_context)
            run.steps = stored_steps
            run.updated_at = time.time()
            self._observed(
                self.runtime.plugins.notify(
                    self._run_observers, event=RunFinalized(run), runtime=self.runtime
                )
            )
        if status is not RunStatus.PAUSED:
            # A paused run goes on later (in this process, maybe): a policy's restore may
            # forget what it needs to restore the final output then (pii's pseudonym vault).
            for restore in self._restorers:
                output = await maybe_await(restore(context, output))
        # Only the final output comes back restored: the error and the step results are what
        # a caller prints or logs (`flujo run` shows the error on stderr), so they are the
        # stored, scrubbed copies.
        return PipelineResult(run.run_id, status, output, stored_steps, usage, stored_error)

    def _step_hooks(
        self,
        run: RunRecord,
        index: int,
        step: Step,
        data: Any,
        context: PipelineContext,
        path: str | None = None,
    ) -> _StepHooks:
        """``flujo_step_started`` observers, then the body inside every ``flujo_wrap_step``
        wrapper (entered only when a plugin implements either hook). A step inside a
        control-flow step is named by its ``path``."""
        return _StepHooks(self, run, index, step, data, context, path)

    def _step_writes(self, event: StepCompleted) -> list[StepWrite]:
        """What each ``flujo_step_commit`` plugin adds to this step's commit. A plugin whose
        hook raises is recorded (like an observer) and adds nothing: half its rows would be
        worse than none."""
        writes: list[StepWrite] = []
        dialect = self.runtime.state.dialect
        for impl in self._step_committers:
            commit = StepCommit(dialect, impl.plugin_name)
            errors = self.runtime.plugins.notify(
                [impl], event=event, commit=commit, runtime=self.runtime
            )
            if errors:
                self._observed(errors)
            else:
                writes.extend(commit.writes)
        return writes

    def _observed_one(self, message: str) -> None:
        self.runtime.tasks.record_failure("observer", message)

    def _observed(self, errors: list[str]) -> None:
        for message in errors:
            self._observed_one(message)


class _StepHooks:
    """:meth:`ExecutionManager._step_hooks` (a class: an ``@asynccontextmanager`` around every
    step costs several times more)."""

    __slots__ = ("_args", "_manager", "_wrappers")

    def __init__(
        self,
        manager: ExecutionManager,
        run: RunRecord,
        index: int,
        step: Step,
        data: Any,
        context: PipelineContext,
        path: str | None,
    ) -> None:
        self._manager = manager
        self._args = (run, index, step, data, context, path)
        self._wrappers: StepWrappers | None = None

    async def __aenter__(self) -> None:
        manager = self._manager
        run, index, step, data, context, path = self._args
        event = StepStarted(
            run.run_id,
            run.pipeline_name,
            index,
            step.name if path is None else path,
            await manager.scrub(context, data),
            await manager._snapshot_now(context),
            step.tags,
        )
        runtime = manager.runtime
        if manager._step_start_observers:
            manager._observed(
                runtime.plugins.notify(manager._step_start_observers, event=event, runtime=runtime)
            )
        if manager._step_wrappers:
            wrappers = StepWrappers(
                runtime.plugins,
                manager._step_wrappers,
                manager._observed_one,
                event=event,
                runtime=runtime,
            )
            await wrappers.__aenter__()
            self._wrappers = wrappers

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        wrappers, self._wrappers = self._wrappers, None
        if wrappers is not None:
            await wrappers.__aexit__(exc_type, exc, traceback)
