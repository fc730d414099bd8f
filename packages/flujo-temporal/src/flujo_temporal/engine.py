"""The ``temporal`` engine: a run is stored in Flujo's state, then driven by a Temporal
workflow (:mod:`flujo_temporal.workflow`) whose activities a ``flujo temporal worker``
executes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flujo.domain.errors import UserError
from flujo.domain.models import PipelineResult, RunStatus
from flujo_temporal.config import TemporalSettings
from flujo_temporal.workflow import (
    ANSWERED_SIGNAL,
    WORKFLOW_NAME,
    Node,
    RunArgs,
    StepOptions,
    StepOutcome,
)

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
    from temporalio.service import RPCError

    from flujo import Flujo
    from flujo.config import FlujoConfig
    from flujo.domain.context import PipelineContext
    from flujo.domain.models import Pipeline, Step
    from flujo_temporal.activities import StepActivities

# Added to a step's own timeout budget: loading the pipeline, reading and committing state.
STEP_MARGIN_S = 30.0
# How often a waiter reads whether the run is stored paused (the workflow's result tells only
# its end): from quick, for a pause at the first steps, backing off for a long run.
PAUSE_POLL_MIN_S = 0.05
PAUSE_POLL_MAX_S = 1.0


def workflow_id(run_id: str) -> str:
    """The Temporal workflow id of Flujo run ``run_id``."""
    return f"flujo-{run_id}"


def lease_owner(settings: TemporalSettings) -> str:
    """The name the run's lease is held under in Flujo's state while Temporal drives it."""
    return f"temporal:{settings.namespace}"


def step_options(pipeline: Pipeline, settings: TemporalSettings) -> list[StepOptions]:
    """Each top-level step's activity timeout: its own ``timeout_s`` for every attempt it makes
    inside the activity (``max_retries + 1``) plus a margin; else ``[temporal] step_timeout_s``."""
    options = []
    for step in pipeline.steps:
        if step.timeout_s is None:
            budget = settings.step_timeout_s
        else:
            budget = step.timeout_s * (step.max_retries + 1) + STEP_MARGIN_S
        options.append(StepOptions(step.name, budget))
    return options


def shape(step: Step) -> Node:
    """The shape the workflow walks of ``step``: a parallel (failing on a failed branch), map,
    loop or branch becomes workflow code; anything else, and whatever is inside a parallel
    that ignores failed branches, one activity. (A parallel that ignores a failed branch is
    executed whole: executed as parts, a failed branch would be run again by the join.)"""
    from flujo.domain.control import Branch, Loop, Map, Parallel

    def steps(pipeline: Pipeline) -> list[Node]:
        return [shape(s) for s in pipeline.steps]

    if isinstance(step, Parallel) and step.on_branch_failure == "fail":
        scopes = {k: steps(p) for k, p in step.branches.items()}
        return Node("parallel", step.name, concurrency=step.concurrency or 0, scopes=scopes)
    if isinstance(step, Map):
        return Node(
            "map", step.name, concurrency=step.concurrency, scopes={"body": steps(step.body)}
        )
    if isinstance(step, Loop):
        return Node(
            "loop", step.name, max_iterations=step.max_iterations, scopes={"body": steps(step.body)}
        )
    if isinstance(step, Branch):
        scopes = {k: steps(p) for k, p in step.pipelines()}
        return Node("branch", step.name, router=step.router.name, scopes=scopes)
    return Node("step", step.name)


async def connect(settings: TemporalSettings) -> Client:
    """A client of the configured server; a server that cannot be reached is one line."""
    from temporalio.client import Client

    try:
        return await asyncio.wait_for(
            Client.connect(settings.address, namespace=settings.namespace),
            settings.connect_timeout_s,
        )
    except (TimeoutError, RuntimeError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"[temporal] address {settings.address!r}: cannot reach the Temporal server "
            f"(namespace {settings.namespace!r}): {why}"
        ) from None


def workflow_error(exc: RPCError, settings: TemporalSettings, run_id: str, doing: str) -> UserError:
    """One line for a refused call on run ``run_id``'s workflow (``doing``: "cancel")."""
    from temporalio.service import RPCStatusCode

    if exc.status is RPCStatusCode.NOT_FOUND:
        return UserError(
            f"run {run_id}: no Temporal workflow {workflow_id(run_id)} in namespace "
            f"{settings.namespace!r}"
        )
    return UserError(f"Temporal: cannot {doing} {workflow_id(run_id)}: {exc}")


class TemporalEngine:
    """Submits runs as Temporal workflows and waits for them."""

    name = "temporal"

    def __init__(self, settings: TemporalSettings, config: FlujoConfig | None = None) -> None:
        self.settings = settings
        self._config = config
        self._client: Client | None = None
        self._embedded: AsyncExitStack | None = None
        self._embedded_queue: str | None = None
        self._embedded_ref: str | None = None
        self._embedded_steps: StepActivities | None = None

    async def _embedded_worker(self, runner: Flujo[Any]) -> tuple[str, str]:
        """``(task queue, pipeline reference)`` of the worker this process runs for its own
        runs (``[temporal] embedded_worker``), started on first use; closed by :meth:`aclose`.
        Its task queue is its own: no other worker could execute this runner's pipeline."""
        if self._embedded is None:
            from flujo_temporal.activities import StepActivities
            from flujo_temporal.worker import worker

            assert self._config is not None
            queue = f"{self.settings.task_queue}-embedded-{uuid.uuid4().hex[:12]}"
            ref = runner.pipeline_ref or f"embedded:{queue}"
            stack = AsyncExitStack()
            steps = StepActivities(self._config, runners={ref: runner})
            await stack.enter_async_context(worker(self._config, task_queue=queue, steps=steps))
            self._embedded_steps = steps
            self._embedded, self._embedded_queue, self._embedded_ref = stack, queue, ref
        assert self._embedded_queue is not None
        assert self._embedded_ref is not None
        return self._embedded_queue, self._embedded_ref

    async def aclose(self) -> None:
        """Stop the embedded worker, if one runs (its steps in progress finish first)."""
        stack, self._embedded = self._embedded, None
        if stack is not None:
            await stack.aclose()

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    async def submit(
        self,
        runner: Flujo[Any],
        input: Any,
        *,
        context: PipelineContext | Mapping[str, Any] | None = None,
    ) -> str:
        """Store a new run (nothing executed yet) and start its workflow; return its id."""
        queue, ref = await self._queue(runner)
        client = await self.client()  # unreachable: fail before anything is stored
        created = await runner.run_async(
            input, context=context, until=0, owner=lease_owner(self.settings), engine=self.name
        )
        await self._start(client, runner, created.run_id, queue, ref)
        return created.run_id

    async def _queue(self, runner: Flujo[Any]) -> tuple[str, str]:
        """``(task queue, pipeline reference)`` the runner's workflows are started with."""
        queue, ref = self.settings.task_queue, runner.pipeline_ref
        if self.settings.embedded_worker and self._config is not None:
            queue, ref = await self._embedded_worker(runner)
        if not ref:
            raise UserError(
                "the pipeline has no reference a worker can load it by (path.py:name or "
                "module:name); pass pipeline_ref= to Flujo()"
            )
        return queue, ref

    async def _start(
        self,
        client: Client,
        runner: Flujo[Any],
        run_id: str,
        queue: str,
        ref: str,
        reopen: int = -1,
    ) -> None:
        """Start run ``run_id``'s workflow (``reopen``: see :attr:`RunArgs.reopen`). Its id is
        the run's: one whose earlier execution has closed may start again (a resume), never
        while one runs (Temporal refuses: the caller waits on that one)."""
        from temporalio.common import WorkflowIDReusePolicy

        args = RunArgs(
            run_id=run_id,
            pipeline_ref=ref,
            owner=lease_owner(self.settings),
            steps=step_options(runner.pipeline, self.settings),
            heartbeat_timeout_s=self.settings.heartbeat_timeout_s,
            max_attempts=self.settings.max_attempts,
            retry_initial_s=self.settings.retry_initial_s,
            retry_max_s=self.settings.retry_max_s,
            nodes=[shape(step) for step in runner.pipeline.steps],
            max_parts=self.settings.max_parts_per_step,
            reopen=reopen,
        )
        await client.start_workflow(
            WORKFLOW_NAME,
            args,
            id=workflow_id(run_id),
            task_queue=queue,
            result_type=StepOutcome,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )

    async def wait(self, runner: Flujo[Any], run_id: str) -> PipelineResult:
        """Wait for run ``run_id``'s workflow, then return the run as Flujo's state holds it;
        or return it as soon as it is stored ``paused`` (the workflow then waits for a
        person's answer: the caller answers, then resumes, as on the local engine)."""
        from temporalio.client import WorkflowFailureError
        from temporalio.service import RPCError

        client = await self.client()
        handle = client.get_workflow_handle(workflow_id(run_id), result_type=StepOutcome)
        finished = asyncio.ensure_future(handle.result())
        try:
            # The workflow tells only its end; a pause is read where the activity stored it.
            poll_s = PAUSE_POLL_MIN_S
            while not (await asyncio.wait({finished}, timeout=poll_s))[0]:
                run = await runner.runtime.state.get_run(run_id)
                if run is not None and run.status is RunStatus.PAUSED:
                    return PipelineResult(
                        run.run_id, run.status, None, run.steps, run.usage, run.error
                    )
                poll_s = min(poll_s * 2, PAUSE_POLL_MAX_S)
            await finished
        except RPCError as exc:
            raise workflow_error(exc, self.settings, run_id, "wait for") from None
        except WorkflowFailureError as exc:
            ended = await runner.runtime.state.get_run(run_id)
            if ended is not None and ended.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
                # Cancelled, and stored so: the run as stored is the answer.
                return PipelineResult(
                    ended.run_id, ended.status, None, ended.steps, ended.usage, ended.error
                )
            cause = exc.cause
            while cause.__cause__ is not None:  # the activity's own error, not the wrappers
                cause = cause.__cause__
            why = (str(cause).splitlines() or [type(cause).__name__])[0]
            # Ended outside its own code (terminated, timed out): the workflow could not
            # store its run, so this waiter does, rather than leave it `running` for good
            # (the local stale drain never takes a run an engine drives).
            from flujo_temporal.activities import store_failed

            stored = await store_failed(
                runner.runtime.state,
                runner.runtime.config.state.lease_s,
                run_id,
                lease_owner(self.settings),
                f"its Temporal workflow {workflow_id(run_id)} failed: {why}",
            )
            if stored is None:
                raise UserError(
                    f"run {run_id}: its Temporal workflow {workflow_id(run_id)} failed: {why}"
                ) from None
            ended = await runner.runtime.state.get_run(run_id)
            assert ended is not None
            return PipelineResult(
                ended.run_id, ended.status, None, ended.steps, ended.usage, ended.error
            )
        finally:
            if not finished.done():  # returned paused: stop waiting on the workflow
                finished.cancel()
                with suppress(asyncio.CancelledError):
                    await finished
        run = await runner.runtime.state.get_run(run_id)
        if run is None:  # pragma: no cover - the run was stored before its workflow started
            raise UserError(f"run {run_id} is not in Flujo's state database")
        # Handed back as the local engine does: through the policies' restore (by the
        # embedded worker that finished it, or here).
        output = None
        if run.status is RunStatus.SUCCEEDED:
            embedded = self._embedded_steps
            if embedded is not None and run_id in embedded.outputs:
                output = embedded.outputs.pop(run_id)
            else:
                output = await runner.restored_output(run)
        return PipelineResult(run.run_id, run.status, output, run.steps, run.usage, run.error)

    async def run(
        self,
        runner: Flujo[Any],
        input: Any,
        *,
        context: PipelineContext | Mapping[str, Any] | None = None,
    ) -> PipelineResult:
        run_id = await self.submit(runner, input, context=context)
        return await self.wait(runner, run_id)

    async def resume(self, runner: Flujo[Any], run_id: str) -> PipelineResult:
        """The run's workflow continues it (after an answer, signalled by ``answered``):
        wait for its end or next pause; nothing of it executes in this process. A run that
        ended without succeeding (failed, blocked, over a limit) whose workflow has closed is
        retried from the step it stopped at, as a local resume does: by a new workflow of the
        same id, whose first activity reopens it (only if it is still as read here)."""
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.exceptions import WorkflowAlreadyStartedError

        run = await runner.runtime.state.get_run(run_id)
        ended = (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.PAUSED, RunStatus.SUCCEEDED)
        if run is not None and run.status not in ended:
            client = await self.client()
            found = await own_workflow(client, self.settings, run_id, "resume")
            if found is None or found.status is not WorkflowExecutionStatus.RUNNING:
                queue, ref = await self._queue(runner)
                # Another resume may start it first: then this one waits on that workflow.
                with suppress(WorkflowAlreadyStartedError):
                    await self._start(client, runner, run_id, queue, ref, reopen=run.version)
        return await self.wait(runner, run_id)

    async def answered(self, run_id: str) -> str | None:
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        client = await self.client()
        handle = await own_workflow(client, self.settings, run_id, "signal")
        if handle is None:
            return None  # not a run Temporal drives
        ended = f"run {run_id}: its Temporal workflow {workflow_id(run_id)} has ended"
        if handle.status is not WorkflowExecutionStatus.RUNNING:
            # Terminated or timed out on Temporal while the run waited: nothing receives the
            # answer there. Say so, never "it continues".
            how = handle.status.name.lower() if handle.status is not None else "unknown"
            return f"{ended} ({how}): nothing continues the run there"
        try:
            await handle.handle.signal(ANSWERED_SIGNAL)
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:  # it ended between the two calls
                return f"{ended}: nothing continues the run there"
            raise UserError(
                f"Temporal: cannot signal workflow {workflow_id(run_id)}: {exc}"
            ) from None
        return f"run {run_id} continues on Temporal (workflow {workflow_id(run_id)})"


@dataclass(frozen=True)
class OwnWorkflow:
    """A Flujo run's workflow execution: a handle pinned to it, and its status."""

    handle: WorkflowHandle[Any, Any]
    status: WorkflowExecutionStatus | None


async def own_workflow(
    client: Client, settings: TemporalSettings, run_id: str, doing: str
) -> OwnWorkflow | None:
    """Run ``run_id``'s workflow (``None`` when there is none), pinned to the execution seen,
    after checking it is a Flujo run's: a workflow id is only a name, and another workflow of
    the namespace may carry it (by chance or on purpose); Flujo never cancels or signals it."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        described = await client.get_workflow_handle(workflow_id(run_id)).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise workflow_error(exc, settings, run_id, doing) from None
    if described.workflow_type != WORKFLOW_NAME:
        raise UserError(
            f"run {run_id}: Temporal workflow {workflow_id(run_id)} is not a Flujo run (its "
            f"type is {described.workflow_type!r}): refusing to {doing} it"
        )
    handle = client.get_workflow_handle(workflow_id(run_id), run_id=described.run_id)
    return OwnWorkflow(handle, described.status)


async def cancel(settings: TemporalSettings, run_id: str) -> None:
    """Ask Temporal to cancel run ``run_id``'s workflow (its step in progress is cancelled and
    the run stored failed by a worker)."""
    from temporalio.service import RPCError

    client = await connect(settings)
    found = await own_workflow(client, settings, run_id, "cancel")
    if found is None:
        raise UserError(
            f"run {run_id}: no Temporal workflow {workflow_id(run_id)} in namespace "
            f"{settings.namespace!r}"
        )
    try:
        await found.handle.cancel()
    except RPCError as exc:
        raise workflow_error(exc, settings, run_id, "cancel") from None


def temporal_engine(config: FlujoConfig) -> TemporalEngine:
    """The ``temporal`` engine's factory."""
    return TemporalEngine(config.section("temporal", TemporalSettings), config)
