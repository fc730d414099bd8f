"""``Flujo``: runs a pipeline durably, and owns the lifecycle of what a run needs."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Generic

from pydantic import ValidationError
from typing_extensions import TypeVar

from flujo.application._maybe_await import maybe_await
from flujo.application.background import BackgroundTaskManager, DrainReport
from flujo.application.control_flow import Part, PartResult, inside
from flujo.application.execution_manager import ExecutionManager
from flujo.application.interrupt import StopRequest
from flujo.application.lease import Heartbeat, LeaseKeeper, new_worker_id
from flujo.application.runtime import Runtime
from flujo.application.scrubbing import (
    Scrubbing,
    active_policy_names,
    split_stored_context,
    stored_form,
)
from flujo.application.step_coordinator import StepCoordinator
from flujo.application.targets import locate_pipeline
from flujo.config import FlujoConfig, load_config, loaded_shared_config
from flujo.domain.context import PipelineContext
from flujo.domain.errors import (
    InputValidationError,
    PipelineDefinitionError,
    PluginError,
    ResumeError,
    RunFinishedError,
    RunLeasedError,
    RunNotFoundError,
    UnstorableValueError,
    UserError,
)
from flujo.domain.events import PolicyDecided
from flujo.domain.interfaces import Engine, GovernancePolicy, Lease, Retriever, StateBackend
from flujo.domain.models import (
    Pipeline,
    PipelineResult,
    RunRecord,
    RunStatus,
    Step,
    StepResult,
    Usage,
    UsageLimits,
    describe_validation_error,
)
from flujo.plugins.manager import PluginManager
from flujo.state import open_state
from flujo.state._rows import dumps

T = TypeVar("T")
# Defaults to PipelineContext, so `Flujo(pipeline)` needs no annotation (PEP 696).
ContextT = TypeVar("ContextT", bound=PipelineContext, default=PipelineContext)


def _infer_context_model(pipeline: Pipeline) -> type[PipelineContext]:
    found: type[PipelineContext] | None = None
    for step in pipeline.walk():
        tp = getattr(step.agent, "context_type", None)
        if not (isinstance(tp, type) and issubclass(tp, PipelineContext)):
            continue
        if found is None or issubclass(tp, found):
            found = tp
        elif not issubclass(found, tp):
            raise PipelineDefinitionError(
                f"step {step.name!r} expects context {tp.__name__} but another step expects "
                f"{found.__name__}; pass context_model= explicitly"
            )
    return found or PipelineContext


class _LoopThread:
    """An event loop on a daemon thread, so the sync API works inside a running loop too and
    background work keeps going between sync calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="flujo-loop", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Flujo(Generic[ContextT]):
    """Runs ``pipeline``; every run is persisted step by step and can be resumed.

    ``config`` is a :class:`FlujoConfig`, a path to a ``flujo.toml``, or ``None`` to discover
    one. ``state`` overrides the backend ``[state]`` names. ``policies`` run before the ones in
    ``[run] policies``. ``engine`` names the registered engine new runs execute on (default
    ``[engine] kind``, else ``local``: this process). Use as a (async) context manager, or call
    :meth:`close`, so background work is drained.
    """

    def __init__(
        self,
        pipeline: Pipeline | Step,
        *,
        context_model: type[ContextT] | None = None,
        config: FlujoConfig | str | Path | None = None,
        state: StateBackend | None = None,
        policies: Sequence[GovernancePolicy] = (),
        usage_limits: UsageLimits | None = None,
        pipeline_ref: str | None = None,
        engine: str | None = None,
    ) -> None:
        defined_as = pipeline
        if isinstance(pipeline, Step):
            pipeline = Pipeline([pipeline])  # a single step is a one-step pipeline
        if not isinstance(pipeline, Pipeline):
            raise PipelineDefinitionError(
                f"Flujo() needs a Pipeline or a Step, got {type(pipeline).__name__}"
            )
        self.pipeline = pipeline
        self.context_model: type[PipelineContext] = context_model or _infer_context_model(pipeline)
        self._config_arg = config
        self._state_arg = state
        self._policies = list(policies)
        self._limits_arg = usage_limits
        self._engine_arg = engine
        self._engine: Engine | None = None
        self.pipeline_ref = pipeline_ref or locate_pipeline(pipeline, defined_as)
        self.worker_id = new_worker_id()
        """Who holds the leases of this runner's runs (host:pid:random)."""
        self._runtime: Runtime | None = None
        self._manager: ExecutionManager | None = None
        self._keeper: LeaseKeeper | None = None
        self._start_lock: asyncio.Lock | None = None
        self._portal: _LoopThread | None = None
        self._retriever: Retriever | None = None
        self._closed = False
        self._stop = StopRequest()
        self.current_run: tuple[str, Heartbeat] | None = None
        """The run this runner is executing right now and its lease, if any."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def services(self) -> Mapping[str, Any]:
        """What plugins attached to this runner (e.g. ``runner.services["memory"]``).

        Available once the runner has started (after its first run, or ``await start()``).
        """
        return self.runtime.services

    async def start(self) -> None:
        """Open the state database and start plugins now instead of at the first run."""
        await self._start()

    @property
    def runtime(self) -> Runtime:
        """The started runtime (config, state, background tasks, plugins)."""
        if self._runtime is None:
            raise RuntimeError("the runner has not started yet; run something first")
        return self._runtime

    async def _start(self) -> ExecutionManager:
        if self._manager is not None:
            return self._manager
        if self._closed:
            raise RuntimeError("this Flujo runner is closed")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._manager is not None:
                return self._manager
            config = self._config_arg
            if config is None:
                # Agents built before with tool ids (and no config) loaded this folder's:
                # the same one, not a second plugin manager.
                config = loaded_shared_config() or load_config()
            elif not isinstance(config, FlujoConfig):
                config = load_config(config)
            for step in self.pipeline.walk():
                # A model that cannot be built (no API key) is a config error now, not a
                # stored failed run later.
                check_ready = getattr(step.agent, "check_ready", None)
                if check_ready is not None:
                    check_ready(step.name)
            plugins = config.plugin_manager
            if plugins is None:
                plugins = config.plugin_manager = PluginManager()
            state = self._state_arg
            if state is None:
                state = await open_state(config)
            else:
                await state.open(plugins.migrations(state.dialect))
            try:
                runtime, coordinator = self._wire(config, plugins, state)
            except BaseException:
                # A start that fails (a bad policy name, a plugin's service) leaves nothing open.
                if self._state_arg is None:
                    await state.close()
                raise
            engine = self._engine_arg or config.engine.kind
            if engine != "local":  # new runs go to that engine (see run_async)
                from flujo.application.engines import create_engine

                what = "" if self._engine_arg is None else f"Flujo(engine={engine!r})"
                self._engine = create_engine(config, plugins, engine, what=what)
            limits = self._limits_arg or config.run.usage_limits()
            self._runtime = runtime
            self._keeper = LeaseKeeper(state, config.state.lease_s)
            self._manager = ExecutionManager(self.pipeline, runtime, coordinator, limits)
            return self._manager

    def _wire(
        self, config: FlujoConfig, plugins: PluginManager, state: StateBackend
    ) -> tuple[Runtime, StepCoordinator]:
        """The runtime and the policy chain for this runner; plugins' services start here."""
        tasks = BackgroundTaskManager(config.run.background_concurrency)
        runtime = Runtime(config, state, tasks, plugins)
        names = active_policy_names(config, plugins)
        policies = [*self._policies, *(runtime.create("policies", n) for n in names)]
        runtime.scrubbing = Scrubbing(policies, config)
        listeners = plugins.implementations("flujo_policy_decided")

        def on_decision(event: PolicyDecided) -> None:
            for message in plugins.notify(listeners, event=event, runtime=runtime):
                tasks.record_failure("observer", message)

        coordinator = StepCoordinator(
            policies, on_decision=on_decision if listeners else None, scrubbing=runtime.scrubbing
        )
        self._retriever = plugins.first_result("flujo_retriever", runtime=runtime)
        for impl in plugins.implementations("flujo_runtime_started"):
            try:
                plugins.call(impl, runtime=runtime)
            except UserError:
                raise  # a misconfiguration the user must fix: one line, exit 2
            except Exception as exc:
                raise PluginError(impl.plugin_name, f"flujo_runtime_started failed: {exc}") from exc
        return runtime, coordinator

    async def aclose(self) -> DrainReport | None:
        """Drain background work (up to ``[run] drain_timeout_s``) and close the state."""
        if self._closed:
            return None
        self._closed = True
        runtime = self._runtime
        if runtime is None:
            return None
        closing = runtime.plugins.implementations("flujo_runtime_closing")
        for message in runtime.plugins.notify(closing, runtime=runtime):
            runtime.tasks.record_failure("flujo_runtime_closing", message)
        report = await runtime.tasks.drain(runtime.config.run.drain_timeout_s)
        if self._engine is not None and hasattr(self._engine, "aclose"):
            await self._engine.aclose()  # e.g. a worker this process ran for its own runs
        if self._keeper is not None:
            self._keeper.close()
        if self._state_arg is None:
            await runtime.state.close()
        return report

    def close(self) -> DrainReport | None:
        """Sync :meth:`aclose`."""
        if self._portal is None:
            return asyncio.run(self.aclose()) if self._runtime is not None else None
        try:
            return self._portal.call(self.aclose())
        finally:
            self._portal.stop()
            self._portal = None

    async def __aenter__(self) -> Flujo[ContextT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Flujo[ContextT]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._portal is None:
            self._portal = _LoopThread()
        return self._portal.call(coro)

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask this runner to stop, e.g. from a SIGINT/SIGTERM handler (safe there and from any
        thread). The run in progress stops before its next step, or at once if its current
        step is async (cancelled; a sync one finishes first), and is stored ``interrupted``
        with its lease released; ``resume`` continues it. The runner stays stopping: a later
        run or resume stops before its first step, and ``resume_stale`` claims no more runs.
        """
        self._stop.request(signum)

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called."""
        return self._stop.requested

    # ------------------------------------------------------------------ runs

    def _new_context(self, context: ContextT | Mapping[str, Any] | None) -> PipelineContext:
        if isinstance(context, self.context_model):
            return context
        try:
            if isinstance(context, PipelineContext):
                return self.context_model.model_validate(context.model_dump())
            return self.context_model.model_validate(dict(context or {}))
        except ValidationError as exc:
            raise InputValidationError(
                f"context does not validate as {self.context_model.__name__}: "
                f"{describe_validation_error(exc, 'context')}"
            ) from None

    def _bind(self, context: PipelineContext, run_id: str) -> None:
        context.run_id = run_id
        context._retriever = self._retriever

    async def run_async(
        self,
        input: Any,
        *,
        context: ContextT | Mapping[str, Any] | None = None,
        until: int | None = None,
        owner: str | None = None,
        engine: str | None = None,
    ) -> PipelineResult:
        """Run the pipeline on ``input``. Step failures end the run with a status, they do not
        raise. An ``input`` that does not validate against the first step, or a bad
        ``context``, raises :class:`InputValidationError` before anything is stored.

        For engines that execute a run step by step elsewhere (see
        :class:`~flujo.domain.interfaces.Engine`): ``until`` stops before top-level step
        ``until`` (``0``: store the run, execute nothing), leaving the run ``running`` under
        its lease, and the result's status ``running``; ``owner`` holds that lease instead of
        this runner's :attr:`worker_id`, so the engine's next call (see :meth:`resume_async`)
        takes it over at once; ``engine`` (its name) is recorded with the run, so the local
        stale drain (:meth:`resume_stale_async`) never claims it: that engine recovers it.

        New runs execute on the runner's engine (``engine=``, else ``[engine] kind``): with
        another than ``local`` (``temporal``), this hands the run to it and returns what it
        reports."""
        manager = await self._start()
        if self._engine is not None and until is None and owner is None and engine is None:
            return await self._engine.run(self, input, context=context)
        ctx = self._new_context(context)
        # A caller's bad input is an error to the caller, raised before anything is stored.
        input = self.pipeline.steps[0].validate_input(input)
        run_id = uuid.uuid4().hex
        self._bind(ctx, run_id)
        now = time.time()
        run = RunRecord(
            run_id=run_id,
            pipeline_name=self.pipeline.name or _ref_name(self.pipeline_ref),
            pipeline_version=self.pipeline.version,
            pipeline_ref=self.pipeline_ref,
            status=RunStatus.RUNNING,
            input=await manager.scrub(ctx, input),
            output=None,
            error=None,
            context=await manager.scrub(ctx, stored_form(ctx)),
            usage=Usage(),
            current_step=0,
            created_at=now,
            updated_at=now,
            engine=engine,
        )
        for what, value in (("input", run.input), ("context", run.context)):
            try:
                dumps(value)
            except UnstorableValueError as exc:
                raise InputValidationError(f"the run's {what} cannot be stored: {exc}") from None
        lease_s = manager.runtime.config.state.lease_s
        assert self._keeper is not None
        # Held before the insert lands: see Heartbeat.
        owner = owner or self.worker_id
        beat = self._keeper.hold(run_id, Lease(owner, 1))
        try:
            await manager.runtime.state.create_run(run, owner=owner, lease_s=lease_s)
            beat.taken = True
            return await self._execute(manager, run, ctx, 0, input, [], beat, until)
        finally:
            self._keeper.release(beat)

    async def _execute(
        self,
        manager: ExecutionManager,
        run: RunRecord,
        ctx: PipelineContext,
        start: int,
        data: Any,
        previous: list[StepResult],
        beat: Heartbeat,
        until: int | None = None,
    ) -> PipelineResult:
        """``manager.execute`` with this runner's stop request current (see
        :meth:`request_stop`) and :attr:`current_run` set while it runs."""
        token = self._stop.bind()
        self.current_run = (run.run_id, beat)
        try:
            return await manager.execute(
                run,
                ctx,
                start=start,
                data=data,
                previous=previous,
                lease=beat,
                stop=self._stop,
                until=until,
            )
        finally:
            self.current_run = None
            self._stop.unbind(token)

    async def execute_part_async(
        self,
        run_id: str,
        index: int,
        part: str | None = None,
        *,
        owner: str,
        enter: bool = False,
        lease_epoch: int | None = None,
        usage: Usage | None = None,
    ) -> PartResult:
        """For an engine that runs the parts of a control-flow step elsewhere (one Temporal
        activity per branch, item, iteration): execute top-level step ``index`` of run
        ``run_id`` restricted to ``part`` (a path, see
        :class:`~flujo.application.control_flow.Part`; with ``enter``, up to the construct
        at ``part``), committing what it runs by path, and report what it saw. ``part=None``:
        the whole step, finding committed parts committed (the join).

        ``lease_epoch``: write under the lease ``owner`` already holds at that epoch (parts
        running at once share the one their engine took; it is not renewed here: writes are
        fenced by owner and epoch, and no other worker takes a run an engine drives); ``None``:
        take the run's lease under ``owner`` first, as :meth:`resume_async` does. ``usage``:
        the run's usage so far, as the engine counted it (concurrent parts each write their
        own total; the engine adds up what each reports it ``spent``); ``None``: as stored.

        A part inside which a step pauses for a person reports ``paused`` and leaves the run
        running (the join then pauses it); a part that fails ends the run as on any engine.
        Not for the branches of a parallel that ignores failed branches: the join would run a
        failed one again (execute such a parallel whole). Policies on a construct's own input
        run in every call that passes through it, as in every resume of a local run.
        """
        manager = await self._start()
        state = manager.runtime.state
        if not 0 <= index < len(self.pipeline.steps):
            raise UserError(f"the pipeline has no step {index} ({len(self.pipeline.steps)} steps)")
        if part is not None:
            name = self.pipeline.steps[index].name
            if part != name and not inside(part, name):
                raise UserError(f"part {part!r} is not inside step {name!r} (step {index})")
        try:
            run, ctx = await self._resumable(state, run_id)
        except RunFinishedError:
            run = await state.get_run(run_id)  # type: ignore[assignment]
            assert run is not None
            return PartResult(run.status, run.current_step, run.error, None)
        if run.status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED) or run.current_step > index:
            return PartResult(run.status, run.current_step, run.error, None)
        if run.current_step < index:
            raise ResumeError(f"run {run_id} is at step {run.current_step}, not at step {index}")
        if lease_epoch is None:
            lease_s = manager.runtime.config.state.lease_s
            taken = await state.acquire_lease(run_id, owner, lease_s, seen_version=run.version)
            if taken is None:
                raise RunLeasedError(f"run {run_id} changed or is held elsewhere; try again")
        else:
            taken = Lease(owner, lease_epoch)
        if usage is not None:
            run.usage = Usage()
            run.usage.add(usage)
        base = Usage()
        base.add(run.usage)
        # Not held by this runner's lease keeper: sibling parts of one run may run in this
        # process at once, sharing the lease.
        beat = Heartbeat(run_id, taken, taken=True)
        restricted = None if part is None else Part(part, enter)
        data = run.input if index == 0 else run.last_output
        result = await manager.execute(
            run,
            ctx,
            start=index,
            data=data,
            previous=run.steps[:index],
            lease=beat,
            until=index + 1,
            part=restricted,
        )
        # Running: past the step when the execution completed it (a part may), else at it.
        step = len(result.steps) if result.status is RunStatus.RUNNING else index
        return PartResult(result.status, step, result.error, taken, base, restricted, result.output)

    async def restored_output(self, run: RunRecord) -> Any:
        """The stored output of ``run`` through every policy's ``restore``, as
        :meth:`run_async` hands it back: for an engine that executed the run's steps elsewhere.
        (A policy that keeps its originals in memory restores only what this process saw.)"""
        manager = await self._start()
        fields, _ = split_stored_context(run.context if isinstance(run.context, dict) else {})
        context = self.context_model.model_construct(**fields)
        context.run_id = run.run_id
        output = run.output
        for restore in manager._restorers:
            output = await maybe_await(restore(context, output))
        return output

    def run(
        self, input: Any, *, context: ContextT | Mapping[str, Any] | None = None
    ) -> PipelineResult:
        """Sync :meth:`run_async` (works inside a running event loop as well)."""
        return self._sync(self.run_async(input, context=context))

    async def resume_async(
        self, run_id: str, *, until: int | None = None, owner: str | None = None
    ) -> PipelineResult:
        """Continue run ``run_id`` at its first unfinished step; finished steps are not re-run.

        The run is taken only if it is still as it was read (its version): a run another
        worker finished, or took, in between is never executed again. ``until`` and
        ``owner`` are as for :meth:`run_async` (a lease ``owner`` already holds is taken
        over, with a new epoch that fences out any earlier holder's writes).

        A run another engine drives (recorded with it: ``temporal``) is not executed here,
        where it would race that engine: it is handed to the engine's ``resume``, which
        returns its result (or its next pause), as :meth:`run_async` does.
        """
        manager = await self._start()
        state = manager.runtime.state
        if until is None and owner is None:
            recorded = await state.get_run(run_id)
            # Not `_resumable`: such an engine goes on at the answer, so the run may have
            # succeeded before this call; its engine reports it as it stands.
            if recorded is not None and recorded.engine not in (None, "local"):
                async with self._recorded_engine(manager, recorded) as engine:
                    resume = getattr(engine, "resume", None)
                    if resume is None:  # an engine written before `resume` was in the protocol
                        raise ResumeError(
                            f"run {run_id} is driven by engine {recorded.engine!r}, which "
                            "cannot resume it from here"
                        )
                    result: PipelineResult = await resume(self, run_id)
                    return result
        keeper = self._keeper
        assert keeper is not None
        lease_s = manager.runtime.config.state.lease_s
        refused_at: int | None = None
        for _ in range(_TAKE_ATTEMPTS):
            run, ctx = await self._resumable(state, run_id)
            if run.version == refused_at or keeper.holds(run_id):
                break  # refused, and nothing changed since: a live worker holds it
            # Held before the take lands: see Heartbeat.
            taker = owner or self.worker_id
            beat = keeper.hold(run_id, Lease(taker, run.version + 1))
            try:
                if await state.acquire_lease(run_id, taker, lease_s, seen_version=run.version):
                    beat.taken = True
                    start = run.current_step
                    data = run.input if start == 0 else run.last_output
                    return await self._execute(
                        manager, run, ctx, start, data, run.steps[:start], beat, until
                    )
            finally:
                keeper.release(beat)
            # Refused: a live worker holds the run, or it changed since it was read (it may
            # have finished, or failed further on). Read it again to tell which.
            refused_at = run.version
        raise RunLeasedError(
            f"run {run_id} is running on another worker (its lease has not expired); "
            "resume it once that worker is gone, e.g. with `flujo runs resume --stale`"
        )

    async def _resumable(
        self, state: StateBackend, run_id: str
    ) -> tuple[RunRecord, PipelineContext]:
        """The stored run and its context, if this runner may resume it."""
        run = await state.get_run(run_id)
        if run is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        if run.status is RunStatus.SUCCEEDED:
            raise RunFinishedError(f"run {run_id} already succeeded; nothing to resume")
        if run.pipeline_version != self.pipeline.version:
            raise ResumeError(
                f"run {run_id} was made by pipeline version {run.pipeline_version} "
                f"({run.pipeline_name}); this pipeline is version {self.pipeline.version}"
            )
        fields, keys = split_stored_context(run.context)
        try:
            ctx = self.context_model.model_validate(fields)
        except ValidationError as exc:
            raise ResumeError(f"run {run_id}: stored context no longer validates: {exc}") from None
        ctx._stored_keys = keys
        self._bind(ctx, run_id)
        return run, ctx

    def resume(self, run_id: str) -> PipelineResult:
        """Sync :meth:`resume_async`."""
        return self._sync(self.resume_async(run_id))

    async def approve_async(
        self, run_id: str, answer: Any = None, *, reason: str | None = None, by: str | None = None
    ) -> RunRecord:
        """Answer the human step paused run ``run_id`` waits at (see :meth:`Step.human`):
        ``answer`` is validated against its schema and committed with who gave it and why;
        the run is left ``interrupted`` for any worker to resume (:meth:`resume_async`), or
        continued at once by the engine that drives it (``[engine] kind``: a Temporal
        workflow waiting on the answer is signalled)."""
        record, _ = await self._answer(run_id, True, answer, reason, by)
        return record

    def approve(
        self, run_id: str, answer: Any = None, *, reason: str | None = None, by: str | None = None
    ) -> RunRecord:
        """Sync :meth:`approve_async`."""
        return self._sync(self.approve_async(run_id, answer, reason=reason, by=by))

    async def reject_async(self, run_id: str, *, reason: str, by: str | None = None) -> RunRecord:
        """Refuse the paused run ``run_id``, saying who rejected it and why: at a human step it
        ends ``failed``; a tool call does not run, the run is left ``interrupted`` and the model
        is told when it resumes (the engine that drives it is told, as for
        :meth:`approve_async`)."""
        record, _ = await self._answer(run_id, False, None, reason, by)
        return record

    def reject(self, run_id: str, *, reason: str, by: str | None = None) -> RunRecord:
        """Sync :meth:`reject_async`."""
        return self._sync(self.reject_async(run_id, reason=reason, by=by))

    async def _answer(
        self, run_id: str, approve: bool, answer: Any, reason: str | None, by: str | None
    ) -> tuple[RunRecord, str | None]:
        """Store the answer, then tell the engine (here, for every caller: the CLI, the Python
        API, flujo-ui); returns the run and what the engine said happens next, if anything."""
        from flujo.application.control_flow import answer_human

        manager = await self._start()
        ctx = self._new_context(None)
        self._bind(ctx, run_id)

        async def scrub(value: Any) -> Any:
            return await manager.scrub(ctx, value)

        # The engine told is the one that drives this run (recorded with it), whatever this
        # runner's own `[engine] kind`: a web app or script configured `local` answering a run
        # Temporal drives must still continue its workflow. No engine recorded: the local one,
        # which has nothing waiting (`flujo runs resume`, or a --stale worker, continues it).
        # It is made before the answer is stored: an answer no engine here can be told of
        # (its plugin not installed) would leave the engine waiting for good.
        found = await manager.runtime.state.get_run(run_id)
        async with AsyncExitStack() as stack:
            engine = None
            if found is not None and found.engine is not None:
                engine = await stack.enter_async_context(self._recorded_engine(manager, found))
            record, answered = await answer_human(
                manager.runtime.state,
                self.pipeline,
                run_id,
                approve=approve,
                answer=answer,
                reason=reason,
                by=by or _who(),
                worker=self.worker_id,
                lease_s=manager.runtime.config.state.lease_s,
                scrub=scrub,
            )
            manager.coordinator.answered(answered)
            if engine is None:
                return record, None
            return record, await engine.answered(record.run_id)

    @asynccontextmanager
    async def _recorded_engine(
        self, manager: ExecutionManager, run: RunRecord
    ) -> AsyncIterator[Engine]:
        """The engine ``run`` records (the one that drives it): this runner's own when it is
        that one (its embedded worker, if any, is the one executing the run), else one made
        for the call and closed after it."""
        assert run.engine is not None
        if self._engine is not None and self._engine.name == run.engine:
            yield self._engine
            return
        from flujo.application.engines import create_engine

        config = manager.runtime.config
        plugins = config.plugin_manager or PluginManager()
        engine = create_engine(config, plugins, run.engine, what=f"run {run.run_id}'s engine")
        try:
            yield engine
        finally:
            if hasattr(engine, "aclose"):
                await engine.aclose()

    async def resume_stale_async(self, *, limit: int = 100) -> list[PipelineResult]:
        """Claim runs of this pipeline whose worker died (expired lease) or was stopped
        (``interrupted``), and finish them. Stops claiming once :meth:`request_stop` is called.

        Each stale run is claimed by exactly one worker, however many call this at once
        (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). Returns the resumed runs' results; a run
        another worker took over meanwhile (this one's commit refused) is left to it.
        """
        from flujo.application.stale import drain_stale

        manager = await self._start()
        return await drain_stale(
            manager.runtime.state,
            self.worker_id,
            manager.runtime.config.state.lease_s,
            self.resume_async,
            limit=limit,
            stopped=lambda: self._stop.requested,
            pipeline_version=self.pipeline.version,
        )

    def resume_stale(self, *, limit: int = 100) -> list[PipelineResult]:
        """Sync :meth:`resume_stale_async`."""
        return self._sync(self.resume_stale_async(limit=limit))


# Reads and takes of one run in a row, when each take is refused because the run changed.
_TAKE_ATTEMPTS = 5


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name known (a container): say so
        return "unknown"


def _ref_name(ref: str | None) -> str:
    return ref.rpartition(":")[2] if ref else "pipeline"
