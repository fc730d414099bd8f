"""Runs branch/loop/map/parallel steps (:mod:`flujo.domain.control`) on the durable runner.

A control-flow step is a step like any other to the runner: its agent runs here, inside the
step's chain (policies, limits, the stop request). Every step inside it goes through the same
chain (:meth:`StepCoordinator.execute_step`, known by its path) and is committed as it
finishes with :meth:`StateBackend.save_inner_step`, under the run's lease. A step whose path
already holds a succeeded row (a resumed run) is not run again: its stored output (and, in a
copied scope, its stored context) stand in for it.

Contexts: a branch or a loop runs on the context of its caller. A map item or a parallel
branch runs on its own copy (its commits store that copy, not the run's context), and the
copies come back through the step's ``context_merge``.

Parts (:func:`Part`, for engines that run a construct's parts elsewhere, e.g. one Temporal
activity per branch): a run executed with a part executes only the way to it and the part
itself. On the way, every construct that is an ancestor of the part runs as usual, except that
its scopes (branches, items, iterations, routes) that are neither committed nor on the way
stop the execution there (nothing is committed for them: another part executes them). So a
part is executed, committed by path like any inner step, and the construct is completed later
by an execution that finds all its parts committed (see :meth:`flujo.Flujo.execute_part_async`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flujo.application._maybe_await import maybe_await
from flujo.application.inner_commits import InnerCommits
from flujo.application.scrubbing import split_stored_context
from flujo.domain.approval import (
    APPROVAL_SUFFIX,
    TOOL_APPROVAL,
    answer_for,
    call_fingerprint,
    expired,
    expiry_at,
)
from flujo.domain.control import Branch, ControlStep, Human, Loop, Map, Parallel
from flujo.domain.errors import (
    InnerStepFailed,
    ResumeError,
    RunLeasedError,
    RunNotFoundError,
    UnstorableValueError,
    UserError,
)
from flujo.domain.events import StepCompleted
from flujo.domain.models import (
    InnerStep,
    Pipeline,
    RunStatus,
    Step,
    StepResult,
    StepStatus,
    Usage,
)
from flujo.domain.scope import StepScope, current_step_scope
from flujo.state._rows import dumps, storable_text

if TYPE_CHECKING:
    from flujo.application.execution_manager import ExecutionManager
    from flujo.application.lease import Heartbeat
    from flujo.domain.context import PipelineContext
    from flujo.domain.interfaces import Lease, StateBackend
    from flujo.domain.models import RunRecord


@dataclass(slots=True)
class RunEnv:
    """What the steps inside control-flow steps need of the run executing them."""

    manager: ExecutionManager
    run: RunRecord
    lease: Heartbeat
    usage: Usage
    """The run's usage before the top-level step in progress (the runner's live total)."""
    done: dict[str, InnerStep]
    """Committed inner steps by path (those of an earlier attempt of a resumed run)."""
    part: Part | None = None
    """The one part of a control-flow step to execute (``None``: the whole run)."""
    positions: dict[str, int] = field(init=False)
    """Where each path is in ``run.inner_steps``: a step committed again (it failed before)
    replaces its row there, as in the database, so run observers see each path once."""
    commits: InnerCommits = field(init=False)
    """The run's inner-step commits (steps finishing together commit together)."""
    found: dict[str, Usage] = field(default_factory=dict)
    """By construct path: the usage of the inner steps this execution found committed (run
    by an earlier execution, or by another part). A construct's row holds them as well as
    what it ran, as a local run's row does; the run's total counted them when committed."""

    def __post_init__(self) -> None:
        self.positions = {s.path: i for i, s in enumerate(self.run.inner_steps)}
        self.commits = InnerCommits(self.manager.runtime.state, self.run.run_id, self.lease)

    def committed(self, inner: InnerStep) -> None:
        """Record ``inner`` as committed in ``run.inner_steps``."""
        at = self.positions.get(inner.path)
        if at is None:
            self.positions[inner.path] = len(self.run.inner_steps)
            self.run.inner_steps.append(inner)
        else:
            self.run.inner_steps[at] = inner

    def found_row(self, frame: _Frame, row: InnerStep) -> None:
        """Count committed ``row`` (not run again) in the rows of the constructs around it."""
        for scope in frame.scopes:
            self.found.setdefault(scope.step_name, Usage()).add(row.result.usage)

    def found_scope(self, frame: _Frame, where: str, pipeline: Pipeline) -> None:
        """:meth:`found_row` for the steps of a scope found finished (not walked again)."""
        for step in pipeline.steps:
            row = self.done.get(f"{where}/{step.name}")
            if row is not None:
                self.found_row(frame, row)

    def row_usage(self, path: str, result: StepResult) -> StepResult:
        """``result`` of the construct at ``path`` with the usage its row holds: what it ran
        and what it found committed."""
        found = self.found.pop(path, None)
        if found is None:
            return result
        usage = Usage()
        usage.add(result.usage)
        usage.add(found)
        return dataclasses.replace(result, usage=usage)


@dataclass(slots=True)
class Part:
    """One part of the control-flow step in progress to execute, and what its execution saw.

    ``path`` names a scope (``research/web``, ``summaries[2]``, ``retry#3``, ``route/billing``)
    or a branch's router step (``route/@router``), at any depth: it is executed whole; of the
    constructs it is inside, only the way to it runs. With ``enter``, ``path`` names a
    construct: the execution runs up to it, notes what the engine needs to know of it (a
    map's number of items) and stops before any of its scopes.
    """

    path: str
    enter: bool = False
    spent: Usage = field(default_factory=Usage)
    """The usage of the steps this execution ran (not of those it found committed)."""
    items: dict[str, int] = field(default_factory=dict)
    """The number of items of every map entered, by the map's path."""
    routes: dict[str, str] = field(default_factory=dict)
    """The route every branch entered chose (its key, ``@default``), by the branch's path."""
    finished: dict[str, bool] = field(default_factory=dict)
    """Whether the loop is done after each iteration executed, by the iteration's path."""
    paused: bool = False
    """A step inside the part paused for a person: the part waits (the run is not paused:
    the engine pauses it by executing the whole control-flow step once its other parts are
    done)."""


@dataclass(slots=True)
class PartResult:
    """What :meth:`flujo.Flujo.execute_part_async` did."""

    status: RunStatus
    """The run's status after it: ``running`` (the part is committed, or it reached what
    another part executes; or, with ``next_step`` past the step, the whole step is), or the
    status the run ended (or paused, executing a whole step) with."""
    next_step: int
    """The top-level step the run is at now."""
    error: str | None
    lease: Lease | None
    """The lease the execution wrote under (``None``: it executed nothing)."""
    base: Usage = field(default_factory=Usage)
    """The run's usage the execution started from."""
    part: Part | None = None
    """The part executed, with what it saw and spent."""
    output: Any = None
    """The run's output, when the execution ended it ``succeeded`` (through the policies'
    ``restore``, as :meth:`flujo.Flujo.run_async` hands it back)."""


class _Elsewhere(BaseException):
    """The execution of a part reached what is not its to execute: it stops there, committing
    nothing more. A ``BaseException``: no step's retry or failure handling may take it."""


def inside(path: str, ancestor: str) -> bool:
    """Whether ``path`` is inside ``ancestor`` (a scope or step path, by the path grammar)."""
    n = len(ancestor)
    return len(path) > n and path.startswith(ancestor) and path[n] in "/[#"


def _elsewhere(env: RunEnv, construct: str, where: str) -> bool:
    """Whether scope ``where`` of the construct at ``construct`` belongs to another part."""
    part = env.part
    if part is None or not inside(part.path, construct):
        return False
    return not (part.path == where or inside(part.path, where))


def _on_way(env: RunEnv, where: str) -> bool:
    """Whether ``where`` is the part or holds it: once ``where`` is done, so is the part (the
    construct around it is completed by a later execution, with every part's usage known)."""
    part = env.part
    return part is not None and (part.path == where or inside(part.path, where))


def _entering(env: RunEnv, path: str) -> bool:
    part = env.part
    return part is not None and part.enter and part.path == path


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where a step inside a control-flow step runs."""

    index: int
    """The index of the top-level step this all belongs to."""
    shared: bool
    """Whether the context is the run's own (committed to the run row) or a copy."""
    scopes: tuple[StepScope, ...]
    """The scopes of the enclosing control-flow steps, outermost first: a step's usage is
    theirs too."""


_env: ContextVar[RunEnv | None] = ContextVar("flujo_control_env", default=None)
_frame: ContextVar[_Frame | None] = ContextVar("flujo_control_frame", default=None)


def enter_run(env: RunEnv) -> object:
    """Make ``env`` the run that control-flow steps in this task belong to."""
    return _env.set(env)


def leave_run(token: object) -> None:
    """Undo :func:`enter_run`."""
    _env.reset(token)  # type: ignore[arg-type]


def current_run() -> RunEnv | None:
    """The run executing in this task (and in the background work its hooks scheduled),
    or ``None``."""
    return _env.get()


def done_steps(run: RunRecord) -> dict[str, InnerStep]:
    """A stored run's committed inner steps by path."""
    return {s.path: s for s in run.inner_steps}


async def run_construct(construct: ControlStep, data: Any, context: PipelineContext) -> Any:
    """The agent of every control-flow step: run it in the current run."""
    env = _env.get()
    scope = current_step_scope()
    if env is None or scope is None:
        raise RuntimeError(
            f"control-flow step {construct.name!r} runs only inside a pipeline run by Flujo"
        )
    outer = _frame.get()
    if outer is None:  # a top-level step
        index = next(
            i for i, s in enumerate(env.manager.pipeline.steps) if s.name == construct.name
        )
        frame = _Frame(index, shared=True, scopes=(scope,))
    else:
        frame = _Frame(outer.index, outer.shared, (*outer.scopes, scope))
    path = scope.step_name
    if not isinstance(construct, Map) and _entering(env, path):
        raise _Elsewhere  # the engine's next parts are this construct's
    try:
        if isinstance(construct, Branch):
            output, _ = await _branch(env, frame, construct, path, data, context)
        elif isinstance(construct, Loop):
            output, _ = await _loop(env, frame, construct, path, data, context)
        elif isinstance(construct, Map):
            output = await _map(env, frame, construct, path, data, context)
        elif isinstance(construct, Parallel):
            output = await _parallel(env, frame, construct, path, data, context)
        else:  # pragma: no cover - every ControlStep subclass is listed above
            raise TypeError(f"unknown control-flow step {construct!r}")
    finally:
        if outer is None:
            # Stopped mid-way (cancelled), its scopes may have left a batch being written:
            # the run's own commits come after it.
            await env.commits.drain()
    return output


# --------------------------------------------------------------------------- steps and commits


def _restored(context: PipelineContext, stored: Any) -> PipelineContext:
    """A scope's context from its stored form (as a resumed run's context is)."""
    fields, keys = split_stored_context(stored)
    restored = type(context).model_validate(fields)
    restored._retriever = context._retriever
    restored._stored_keys = keys
    return restored


_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


def _copied(context: PipelineContext) -> PipelineContext:
    """A copy a concurrent scope may change freely (fields deep-copied, services shared)."""
    clone = context.model_copy()  # shallow: private attributes (services) are shared
    fields = clone.__dict__
    for name, value in fields.items():
        if type(value) not in _IMMUTABLE:
            fields[name] = copy.deepcopy(value)
    return clone


def _succeeded(env: RunEnv, path: str) -> InnerStep | None:
    found = env.done.get(path)
    if found is not None and found.result.status is StepStatus.SUCCEEDED:
        return found
    return None


async def _run_step(
    env: RunEnv, frame: _Frame, step: Step, path: str, data: Any, context: PipelineContext
) -> tuple[Any, PipelineContext]:
    """Run one step (plain or control-flow) at ``path`` and commit it; or, when its path is
    committed already, take its stored output (and context). Raises :class:`InnerStepFailed`
    when it does not succeed."""
    found = _succeeded(env, path)
    if found is not None:
        if _entering(env, path):
            raise _Elsewhere  # done before: nothing to learn of it, nothing to run after it
        env.found_row(frame, found)
        if found.context is not None:
            context = _restored(context, found.context)
        return found.result.output, context
    env.lease.check()
    manager = env.manager
    so_far = Usage()
    so_far.add(env.usage)
    so_far.add(frame.scopes[0].usage)
    token = _frame.set(frame)
    try:
        if manager._step_start_observers or manager._step_wrappers:
            # Plugins' step hooks (spans, progress) see inner steps too, by path.
            async with manager._step_hooks(env.run, frame.index, step, data, context, path):
                result = await _execute(env, step, path, data, context, so_far)
        else:
            result = await _execute(env, step, path, data, context, so_far)
    finally:
        _frame.reset(token)
    if not isinstance(step, ControlStep):
        # A control-flow step's usage is its inner steps': counted once, where they ran.
        for scope in frame.scopes:
            scope.usage.add(result.usage)
        if env.part is not None:
            env.part.spent.add(result.usage)
    else:
        result = env.row_usage(path, result)
    result = await _commit(env, frame, result, context, data=data, tags=step.tags)
    if env.part is not None and result.status is StepStatus.PAUSED:
        env.part.paused = True
        raise _Elsewhere  # the part waits; the run is paused when the whole step runs
    if result.status is not StepStatus.SUCCEEDED:
        error = result.error or "failed"
        if not isinstance(step, ControlStep):
            error = f"step {path!r}: {error}"
        raise InnerStepFailed(result.status.value, error)
    return result.output, context


async def _execute(
    env: RunEnv, step: Step, path: str, data: Any, context: PipelineContext, so_far: Usage
) -> StepResult:
    manager = env.manager
    return await manager.coordinator.execute_step(
        step,
        data,
        context,
        run_id=env.run.run_id,
        run_usage=so_far,
        limits=manager.limits,
        path=path,
    )


async def _commit(
    env: RunEnv,
    frame: _Frame,
    result: StepResult,
    context: PipelineContext,
    *,
    data: Any,
    tags: tuple[str, ...],
) -> StepResult:
    """Store ``result`` (named by its path) as the runner stores a step: scrubbed, checked
    storable (or failed, saying why), fenced by the lease; then tell the
    ``flujo_step_completed`` observers."""
    manager = env.manager
    result, persisted, (raw, scrubbed), context_json = await manager._checked_for_commit(
        result.name, context, result, env.run, None
    )
    total = Usage()
    total.add(env.usage)
    total.add(frame.scopes[0].usage)
    observers = manager._step_observers
    event: StepCompleted | None = None
    if observers or manager._step_committers:
        event = StepCompleted(
            env.run.run_id,
            env.run.pipeline_name,
            frame.index,
            persisted,
            await manager.scrub(context, data),
            manager._snapshot(context, raw, scrubbed),
            tags,
        )
    await env.commits.commit(
        frame.index,
        persisted,
        context_json=context_json if frame.shared else None,
        scope_context_json=None if frame.shared else context_json,
        usage=total,
        writes=manager._step_writes(event) if event is not None else (),
        alone=frame.shared,
    )
    env.committed(InnerStep(frame.index, persisted, None if frame.shared else scrubbed))
    if observers and event is not None:
        manager._observed(
            manager.runtime.plugins.notify(observers, event=event, runtime=manager.runtime)
        )
    return result


def _last_path(where: str, pipeline: Pipeline) -> str:
    """The path of the last step of ``pipeline`` run at ``where``: an iteration, an item or a
    branch has finished when that step is committed (its row holds their output, and the
    scope's context when it is a copy), so they need no row of their own."""
    return f"{where}/{pipeline.steps[-1].name}"


async def _run_pipeline(
    env: RunEnv,
    frame: _Frame,
    pipeline: Pipeline,
    prefix: str,
    data: Any,
    context: PipelineContext,
) -> tuple[Any, PipelineContext]:
    for step in pipeline.steps:
        data, context = await _run_step(env, frame, step, f"{prefix}/{step.name}", data, context)
    return data, context


# --------------------------------------------------------------------------- constructs


async def _branch(
    env: RunEnv, frame: _Frame, branch: Branch, path: str, data: Any, context: PipelineContext
) -> tuple[Any, PipelineContext]:
    router = branch.router
    # The router is a committed step: a resumed run takes the route it took before.
    at = f"{path}/{router.name}"
    decision, context = await _run_step(env, frame, router, at, data, context)
    key, route = branch.choose(decision)
    where = f"{path}/{key}"
    if env.part is not None:
        env.part.routes[path] = key
        if _on_way(env, at) or (
            _elsewhere(env, path, where) and _succeeded(env, _last_path(where, route)) is None
        ):
            raise _Elsewhere
    done = await _run_pipeline(env, frame, route, where, data, context)
    if _on_way(env, where):
        raise _Elsewhere
    return done


async def _loop(
    env: RunEnv, frame: _Frame, loop: Loop, path: str, data: Any, context: PipelineContext
) -> tuple[Any, PipelineContext]:
    check = Step("until", loop.until)  # validates the stored form of a resumed iteration

    async def finished(output: Any, ctx: PipelineContext) -> bool:
        return bool(await loop.until.run(check.validate_input(output), context=ctx))

    def finished_iteration(n: int) -> InnerStep | None:
        return _succeeded(env, _last_path(f"{path}#{n}", loop.body))

    first = 1
    while first <= loop.max_iterations and finished_iteration(first) is not None:
        first += 1
    if first > 1:
        # Resumed after iteration first-1 was committed: decide as it would have.
        for n in range(1, first):
            env.found_scope(frame, f"{path}#{n}", loop.body)
        last = finished_iteration(first - 1)
        assert last is not None
        data = last.result.output
        if last.context is not None:
            context = _restored(context, last.context)
        done = await finished(data, context)
        if env.part is not None:
            env.part.finished[f"{path}#{first - 1}"] = done
            if any(_on_way(env, f"{path}#{n}") for n in range(1, first)):
                raise _Elsewhere  # a part that is done
        if done:
            return data, context
    for iteration in range(first, loop.max_iterations + 1):
        where = f"{path}#{iteration}"
        if _elsewhere(env, path, where):
            raise _Elsewhere
        data, context = await _run_pipeline(env, frame, loop.body, where, data, context)
        done = await finished(data, context)
        if env.part is not None:
            env.part.finished[where] = done
            if _on_way(env, where):
                raise _Elsewhere
        if done:
            return data, context
    raise InnerStepFailed(
        StepStatus.FAILED.value,
        f"loop {path!r} did not finish within max_iterations={loop.max_iterations}: "
        f"its until condition was still false after iteration {loop.max_iterations}",
    )


async def _scoped(
    env: RunEnv,
    frame: _Frame,
    pipeline: Pipeline,
    owner: str,
    where: str,
    data: Any,
    base: PipelineContext,
    limit: asyncio.Semaphore,
    failed: list[BaseException] | None,
) -> tuple[Any, PipelineContext]:
    """Run ``pipeline`` at ``where`` on a copy of ``base`` (a map item, a parallel branch),
    unless it finished before. With ``failed`` (fail fast): the first failure goes there, and
    a scope that gets its turn after one does not start."""
    found = _succeeded(env, _last_path(where, pipeline))
    if found is not None:  # finished before (its steps' rows are skipped one by one otherwise)
        env.found_scope(frame, where, pipeline)
        if _on_way(env, where):
            raise _Elsewhere  # a part that is done
        stored = found.context
        return found.result.output, base if stored is None else _restored(base, stored)
    if _elsewhere(env, owner, where):
        raise _Elsewhere
    async with limit:
        if failed:
            raise failed[0]
        scope = _Frame(frame.index, shared=False, scopes=frame.scopes)
        try:
            done = await _run_pipeline(env, scope, pipeline, where, data, _copied(base))
        except Exception as exc:
            if failed is not None and not failed:
                failed.append(exc)
            raise
        if _on_way(env, where):
            raise _Elsewhere
        return done


async def _fail_fast(
    coros: list[Coroutine[Any, Any, Any]], failed: list[BaseException]
) -> list[Any]:
    """Await all, then raise the first failure (the first in ``failed``, where the scopes put
    it). After a failure no scope starts; those already running finish and are committed
    (what they spent is not thrown away: a resumed run keeps it). Cancelling this (a stop
    request) cancels them all."""
    if not coros:
        return []
    results = await asyncio.gather(*coros, return_exceptions=True)
    if failed:
        raise failed[0]
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _merge_contexts(
    owner: str,
    how: Any,
    base: PipelineContext,
    scopes: dict[str, PipelineContext],
) -> None:
    """Bring the concurrent scopes' context changes into ``base`` (see ``ContextMerge``)."""
    if how == "discard" or not scopes:
        return
    if callable(how):
        await maybe_await(how(base, scopes))
        return
    before = base.model_dump()
    changed: dict[str, tuple[str, Any]] = {}
    for key, scope in scopes.items():
        for name, value in scope.model_dump().items():
            if name == "run_id" or value == before.get(name):
                continue
            if name in changed and changed[name][1] != value:
                raise InnerStepFailed(
                    StepStatus.FAILED.value,
                    f"step {owner!r}: {changed[name][0]!r} and {key!r} both changed context "
                    f"field {name!r}, to different values; say how to combine them with "
                    "context_merge=",
                )
            changed[name] = (key, value)
    for name, (key, _) in changed.items():
        setattr(base, name, getattr(scopes[key], name))


async def _map(
    env: RunEnv, frame: _Frame, step: Map, path: str, data: Any, context: PipelineContext
) -> list[Any]:
    if isinstance(data, str | bytes | dict) or not isinstance(data, list | tuple):
        raise InnerStepFailed(
            StepStatus.FAILED.value,
            f"map {path!r} needs a list as input, got {type(data).__name__}",
        )
    if env.part is not None:
        env.part.items[path] = len(data)
        if _entering(env, path):
            raise _Elsewhere
    limit = asyncio.Semaphore(step.concurrency)
    failed: list[BaseException] = []
    outcomes = await _fail_fast(
        [
            _scoped(env, frame, step.body, path, f"{path}[{i}]", item, context, limit, failed)
            for i, item in enumerate(data)
        ],
        failed,
    )
    await _merge_contexts(
        path, step.context_merge, context, {str(i): c for i, (_, c) in enumerate(outcomes)}
    )
    return [output for output, _ in outcomes]


async def _parallel(
    env: RunEnv, frame: _Frame, step: Parallel, path: str, data: Any, context: PipelineContext
) -> Any:
    limit = asyncio.Semaphore(step.concurrency or len(step.branches))
    keys = list(step.branches)
    failed: list[BaseException] | None = [] if step.on_branch_failure == "fail" else None
    runs = [
        _scoped(env, frame, step.branches[k], path, f"{path}/{k}", data, context, limit, failed)
        for k in keys
    ]
    outcomes: dict[str, tuple[Any, PipelineContext]] = {}
    if step.on_branch_failure == "fail":
        assert failed is not None
        for key, outcome in zip(keys, await _fail_fast(runs, failed), strict=True):
            outcomes[key] = outcome
    else:
        results = await asyncio.gather(*runs, return_exceptions=True)
        errors: list[BaseException] = []
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, InnerStepFailed):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcomes[key] = result
        if not outcomes:
            raise errors[0]
    await _merge_contexts(
        path, step.context_merge, context, {k: c for k, (_, c) in outcomes.items()}
    )
    mapping = {k: output for k, (output, _) in outcomes.items()}
    if step.merge is None:
        return mapping
    merge: Callable[[dict[str, Any]], Any | Awaitable[Any]] = step.merge
    return await maybe_await(merge(mapping))


# --------------------------------------------------------------------------- human input


async def run_human(step: Human, data: Any, context: PipelineContext) -> Any:
    """The agent of a human step: its stored answer, or pause the run for one."""
    env = _env.get()
    scope = current_step_scope()
    if env is None or scope is None:
        raise RuntimeError(f"human step {step.name!r} runs only inside a pipeline run by Flujo")
    path = scope.step_name
    found = _succeeded(env, path)
    if found is not None:  # answered (a top-level human step; inner ones are skipped before)
        return found.result.output
    # Paused before (a resumed, unanswered run): the pause keeps its first expiry.
    before = _paused_record(env.run, path, env.done.get(path))
    at = before.get("expires_at") if isinstance(before, dict) else None
    if (gone := expired(before)) is not None:
        raise InnerStepFailed(
            StepStatus.FAILED.value,
            f"the pause at step {path!r} expired unanswered at {_iso(gone)}",
        )
    if not isinstance(at, int | float):
        at = expiry_at(step.expires_in_s)
    prompt = f" ({step.prompt})" if step.prompt else ""
    until = f", expires {_iso(at)}" if at is not None else ""
    raise InnerStepFailed(
        StepStatus.PAUSED.value,
        f"waiting for a person at step {path!r}{prompt}{until}: answer with "
        f"`flujo runs approve {env.run.run_id}` or `flujo runs reject {env.run.run_id}`",
        None if at is None else {"kind": "human", "expires_at": at},
    )


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="seconds")


def paused_at(run: RunRecord) -> tuple[str, InnerStep | None]:
    """The path of the human step ``run`` waits at, and its inner row (``None`` at the top
    level). Raises :class:`UserError` when the run is not paused."""
    if run.status is not RunStatus.PAUSED:
        raise UserError(f"run {run.run_id} is {run.status.value}, not paused: nothing to answer")
    for inner in reversed(run.inner_steps):
        if inner.result.status is StepStatus.PAUSED:
            return inner.path, inner
    for step in reversed(run.steps):
        if step.status is StepStatus.PAUSED:
            return step.name, None
    raise UserError(f"run {run.run_id} is paused but records no human step waiting")


def human_step(pipeline: Pipeline, path: str) -> Human:
    """The human step at ``path`` (names are unique in the tree: its last segment says it)."""
    name = path.rsplit("/", 1)[-1]
    for step in pipeline.walk():
        if isinstance(step, Human) and step.name == name:
            return step
    raise UserError(f"the pipeline has no human step named {name!r} (at {path!r})")


@dataclass(frozen=True, slots=True)
class Answered:
    """A person's answer, as the audit trail records it (already scrubbed)."""

    run_id: str
    path: str
    """The path of the step that paused (a human step, or the step whose tool call waited)."""
    approved: bool
    by: str
    reason: str | None
    tools: tuple[str, ...]
    """The tool calls answered (empty for a human step)."""
    policies: tuple[str, ...]
    """The policies that asked for the approval (empty for a human step)."""


def _brief(exc: BaseException, limit: int = 200) -> str:
    """An error's text as one short line, its start and end kept (a path 200 levels deep
    is not a message; what is wrong with it is said at the end)."""
    text = " ".join(str(exc).split())
    half = limit // 2
    return text if len(text) <= limit else f"{text[:half]} … {text[-half:]}"


def _paused_record(run: RunRecord, path: str, row: InnerStep | None) -> Any:
    if row is not None:
        return row.result.output
    for step in reversed(run.steps):
        if step.name == path:
            return step.output
    return None


async def answer_human(
    state: StateBackend,
    pipeline: Pipeline,
    run_id: str,
    *,
    approve: bool,
    answer: Any,
    reason: str | None,
    by: str,
    worker: str,
    lease_s: float,
    scrub: Callable[[Any], Awaitable[Any]] | None = None,
) -> tuple[RunRecord, Answered]:
    """Store a person's answer to the paused run ``run_id`` under a lease of its own, and who
    gave it and why at ``<path>@approval``; then leave the run ``interrupted`` (any worker
    resumes it) or, when a human step is rejected, ``failed``.

    A human step's answer is validated against its schema and stored at its path. A tool
    call's answer (approve or reject) names the calls it answers by id and fingerprint: the
    resumed agent runs them (or tells the model they were refused) only if they are still
    those calls. Everything stored goes through ``scrub`` (the run's policies).

    A pause whose expiry has passed is not answered: the run ends ``failed`` saying so, and
    :class:`UserError` says it to whoever answered.
    """
    run = await state.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if run.pipeline_version != pipeline.version:
        raise ResumeError(
            f"run {run_id} was made by pipeline version {run.pipeline_version}; this pipeline "
            f"is version {pipeline.version}"
        )
    path, row = paused_at(run)
    record = _paused_record(run, path, row)
    tool_call = isinstance(record, dict) and record.get("kind") == TOOL_APPROVAL
    value: Any = None
    if tool_call:
        if answer is not None:
            raise UserError(
                f"run {run_id} waits for the approval of a tool call at step {path!r}: it takes "
                "no --input (approve or reject the call as the model made it)"
            )
    else:
        step = human_step(pipeline, path)
        if approve:
            value = answer
            if step.schema is not None:
                checker = Step(step.name, step.agent, input_type=step.schema)
                value = checker.validate_input(answer)
            elif answer is None:
                value = run.last_output if row is None else None

    async def stored(v: Any) -> Any:
        # Checked before the lease is taken (below): an answer that cannot be stored (nested
        # too deep, NaN, a lone surrogate) is refused while the run is still paused. Taken
        # first, the lease would leave the run `running`, answerable by no one, until it
        # expired.
        try:
            dumps(v)
            return v if scrub is None else await scrub(v)
        except (UnstorableValueError, RecursionError) as exc:
            raise UserError(f"run {run_id}: the answer cannot be stored: {_brief(exc)}") from None

    decision = "approved" if approve else "rejected"
    audit: dict[str, Any] = {
        "decision": decision,
        "by": await stored(by),
        "reason": await stored(reason),
    }
    tools: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    if tool_call:
        assert isinstance(record, dict)
        calls = [c for c in record.get("calls") or [] if isinstance(c, dict)]
        tools = tuple(str(c.get("tool")) for c in calls)
        policies = tuple(str(p) for p in record.get("policies") or [])
        audit["calls"] = [
            {
                "tool": str(c.get("tool")),
                "tool_call_id": str(c.get("tool_call_id")),
                "fingerprint": call_fingerprint(str(c.get("tool")), c.get("args")),
            }
            for c in calls
        ]
    elif approve:
        audit["answer"] = await stored(value)
    audit["at"] = time.time()
    scope_context = None if row is None or row.context is None else dumps(row.context)
    results = [StepResult(f"{path}{APPROVAL_SUFFIX}", StepStatus.SUCCEEDED, audit, attempts=1)]
    if approve and not tool_call:
        results.append(StepResult(path, StepStatus.SUCCEEDED, await stored(value), attempts=1))
    lease = await state.acquire_lease(run_id, worker, lease_s, seen_version=run.version)
    if lease is None:
        raise RunLeasedError(f"run {run_id} changed or was taken while answering; try again")
    context_json = dumps(run.context)
    if (at := expired(record)) is not None:
        error = f"the pause at step {path!r} expired unanswered at {_iso(at)}"
        await state.finalize_run(
            run_id,
            RunStatus.FAILED,
            output=None,
            error=error,
            context_json=context_json,
            usage=run.usage,
            lease=lease,
        )
        raise UserError(f"run {run_id}: {error}; the run is now failed")
    for result in results:
        await state.save_inner_step(
            run_id,
            run.current_step,
            result,
            context_json=None,
            scope_context_json=scope_context,
            usage=run.usage,
            lease=lease,
        )
    who, why = audit["by"], audit["reason"]
    if approve:
        status, error = RunStatus.INTERRUPTED, f"approved at step {path!r} by {who}; resume it"
    elif tool_call:
        # The agent goes on: the model is told the call was refused (as for a policy's refusal).
        status = RunStatus.INTERRUPTED
        error = f"tool call rejected at step {path!r} by {who}: {why}; resume it"
    else:
        status, error = RunStatus.FAILED, f"rejected at step {path!r} by {who}: {why}"
    await state.finalize_run(
        run_id,
        status,
        output=None,
        error=storable_text(error),
        context_json=context_json,
        usage=run.usage,
        lease=lease,
    )
    found = await state.get_run(run_id)
    assert found is not None
    return found, Answered(run_id, path, approve, str(who), why, tools, policies)


# --------------------------------------------------------------------------- tool-call approval


def paused_call(path: str) -> tuple[Any, Any] | None:
    """The tool-approval record the step at ``path`` paused with in an earlier attempt of the
    current run, and the answer stored for it (``None`` when unanswered); ``None`` when that
    step did not pause for a tool call (or outside a run)."""
    env = _env.get()
    if env is None:
        return None
    pending: Any = None
    found = env.done.get(path)
    if found is not None and found.result.status is StepStatus.PAUSED:
        pending = found.result.output
    else:
        for step in env.run.steps:
            if step.name == path and step.status is StepStatus.PAUSED:
                pending = step.output
    if not isinstance(pending, dict) or pending.get("kind") != TOOL_APPROVAL:
        return None
    answer = env.done.get(path + APPROVAL_SUFFIX)
    return pending, answer_for(pending, answer.result.output if answer is not None else None)
