"""The Temporal workflow a Flujo run is: deterministic code that only calls activities.

Nothing here does I/O, reads a clock or imports Flujo: the run's state lives in Flujo's state
database and in activity results. Each top-level step is one activity (``flujo.step``) executed
by a worker through Flujo's own step machinery (:mod:`flujo_temporal.activities`). A step that
pauses for a person (a human step) makes the workflow wait for the ``answered`` signal, which
``flujo runs approve`` / ``reject`` sends once the answer is stored.

A top-level branch, loop, map or parallel step is workflow code instead (:class:`_Walk`), on
the tree's shape (:class:`Node`, given when the run is submitted): one ``flujo.part`` activity
per parallel branch and map item (at most the step's ``concurrency`` at once), per loop
iteration (while the loop says go on, at most ``max_iterations``), and for a branch one for
its router then one for the route taken; a construct nested in one of those is walked the same
way. Each activity commits what it executes by path; a last one executes the whole step,
finding every part committed (the join: merges, conflicts, the step's commit). What the
workflow decides on (a map's length, the route, whether a loop is done) comes back in the
activities' results.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import is_cancelled_exception

WORKFLOW_NAME = "flujo.run"
STEP_ACTIVITY = "flujo.step"
PART_ACTIVITY = "flujo.part"
ANSWERED_SIGNAL = "answered"
CANCELLED_ACTIVITY = "flujo.cancelled"
REOPEN_ACTIVITY = "flujo.reopen"
# Errors an attempt raises that another attempt cannot fix (the pipeline is gone, the run does
# not exist): the activity fails at once instead of retrying.
NON_RETRYABLE = ["FlujoUserError"]


@dataclass
class StepOptions:
    """How one top-level step runs as an activity."""

    name: str
    start_to_close_s: float
    """The step's own timeout times its attempts (it retries inside the activity), plus a
    margin; ``[temporal] step_timeout_s`` for a step without a timeout."""


@dataclass
class Node:
    """The shape of one step of the tree, as the workflow walks it (plain data: the workflow's
    input, so fixed in its history)."""

    kind: str
    """``parallel``, ``map``, ``loop``, ``branch``; ``step``: executed whole by whichever
    activity reaches it (a plain step, a human step, a parallel that ignores failed branches)."""
    name: str
    concurrency: int = 0
    """Parallel, map: parts running at once (0: all)."""
    max_iterations: int = 0
    router: str = ""
    """Branch: the name of its router step (``@router`` for a function)."""
    scopes: dict[str, list[Node]] = field(default_factory=dict)
    """The steps of each scope: parallel branches and branch routes (``@default`` too) by
    key; a map's or a loop's ``body``."""


@dataclass
class RunArgs:
    """The workflow's input: which stored run to drive and how each step runs."""

    run_id: str
    pipeline_ref: str
    owner: str
    """Who holds the run's lease in Flujo's state between and during activities."""
    steps: list[StepOptions] = field(default_factory=list)
    heartbeat_timeout_s: float = 30.0
    max_attempts: int = 10
    """Attempts of one step's activity (a worker that dies, a database hiccup)."""
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0
    nodes: list[Node] = field(default_factory=list)
    """Each top-level step's shape (none: every step is one activity, as before)."""
    max_parts: int = 1000
    """Part activities one top-level step may take; what is left past that runs in the
    step's join (a workflow's history has room for some tens of thousands of events)."""
    reopen: int = -1
    """A resume of the run after it ended (failed): the stored version it was seen at, which
    the first activity reopens it from, as a local resume does (-1: a new run, or one
    submitted before resuming existed)."""


@dataclass
class ReopenArgs:
    """One activity: reopen run ``run_id``, ended (not succeeded) at ``version``, for a
    workflow that resumes it; report where it goes on."""

    run_id: str
    pipeline_ref: str
    owner: str
    version: int


@dataclass
class StepArgs:
    """One activity: execute top-level step ``index`` of run ``run_id`` (unless committed)."""

    run_id: str
    pipeline_ref: str
    index: int
    owner: str


@dataclass
class StepOutcome:
    """What an activity reports: the run's status after it, and the next step to execute."""

    status: str
    """A Flujo ``RunStatus`` value: ``running`` (go on at ``next_step``), ``paused`` (wait for
    a person), or final (``succeeded``, ``failed``, ``blocked``, ``limit_exceeded``)."""
    next_step: int
    error: str | None = None
    owner: str | None = None
    """Who holds the run's lease now, when a retried attempt took it under a name of its own
    (see :mod:`flujo_temporal.activities`): the next steps take it over under that name."""


@dataclass
class PartArgs:
    """One activity: execute the part at ``part`` of top-level step ``index`` (see
    ``Flujo.execute_part_async``); ``part=None``: the whole step (the join)."""

    run_id: str
    pipeline_ref: str
    index: int
    owner: str
    part: str | None = None
    enter: bool = False
    """Run up to the construct at ``part`` (a map reports its length), none of its scopes."""
    epoch: int = 0
    """The lease epoch the parts of this step share (0: take the run's lease)."""
    usage: dict[str, float] | None = None
    """The run's usage as the workflow counts it (None: as stored)."""


@dataclass
class PartOutcome:
    """What a part's activity reports."""

    status: str
    next_step: int
    error: str | None = None
    epoch: int = 0
    base: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)
    paused: bool = False
    """A step inside the part waits for a person (the run is paused by the join)."""
    items: dict[str, int] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    finished: dict[str, bool] = field(default_factory=dict)


@dataclass
class CancelArgs:
    """Store run ``run_id`` failed: its workflow was cancelled on Temporal, or (``error``
    given) failed outright, saying so."""

    run_id: str
    pipeline_ref: str
    owner: str
    error: str | None = None


@workflow.defn(name=WORKFLOW_NAME)
class FlujoRun:
    """Drives one stored run, step by step, to a final status."""

    def __init__(self) -> None:
        self._answers = 0
        self._index = 0  # the step in progress, for the reason of a failure

    @workflow.signal(name=ANSWERED_SIGNAL)
    def answered(self) -> None:
        """A person answered (approved or rejected) the human step the run paused at."""
        self._answers += 1

    @workflow.query(name="answers")
    def answers(self) -> int:
        """How many answers arrived (for tests and operators)."""
        return self._answers

    @workflow.run
    async def run(self, args: RunArgs) -> StepOutcome:
        try:
            return await self._steps(args)
        except BaseException as exc:
            # The cancel arrives as CancelledError, or as the awaited activity's error.
            # Cancelled on Temporal (`flujo temporal cancel`): the step in progress is
            # cancelled with it; the run is then stored failed, saying so, and stays cancelled.
            # Any other failure (a step's activity out of attempts, an error no retry fixes)
            # is stored too, in one line, so the run never stays `running` for good.
            error = None
            if not is_cancelled_exception(exc):
                if not isinstance(exc, Exception):
                    raise
                cause: BaseException = exc
                while cause.__cause__ is not None:  # the activity's own error, not wrappers
                    cause = cause.__cause__
                why = (str(cause).splitlines() or [type(cause).__name__])[0]
                error = (
                    f"its Temporal workflow {workflow.info().workflow_id} failed at step "
                    f"{self._index}: {why}"
                )
            await workflow.execute_activity(
                CANCELLED_ACTIVITY,
                CancelArgs(args.run_id, args.pipeline_ref, args.owner, error),
                result_type=StepOutcome,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(
                    maximum_attempts=args.max_attempts,
                    non_retryable_error_types=NON_RETRYABLE,
                ),
            )
            raise

    async def _steps(self, args: RunArgs) -> StepOutcome:
        index = 0
        owner = args.owner
        if args.reopen >= 0:
            reopened: StepOutcome = await workflow.execute_activity(
                REOPEN_ACTIVITY,
                ReopenArgs(args.run_id, args.pipeline_ref, owner, args.reopen),
                result_type=StepOutcome,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=args.retry_initial_s),
                    maximum_interval=timedelta(seconds=args.retry_max_s),
                    maximum_attempts=args.max_attempts,
                    non_retryable_error_types=NON_RETRYABLE,
                ),
                summary="reopen",
            )
            if reopened.status != "running":
                return reopened  # ended otherwise meanwhile: that is the outcome
            index = self._index = reopened.next_step
        while True:
            if index >= len(args.steps):
                # A run with no step left that is still running cannot happen: the activity of
                # the last step returns the run's final status. Fail loudly, never loop.
                return StepOutcome("failed", index, f"no step {index} in the pipeline")
            options = args.steps[index]
            self._index = index
            if index < len(args.nodes) and args.nodes[index].kind != "step":
                ended = await self._construct(args, index, owner, options)
                if ended.status == "running":
                    index = ended.next_step
                    continue
                return ended
            seen = self._answers  # an answer during the activity must not be waited for again
            outcome: StepOutcome = await workflow.execute_activity(
                STEP_ACTIVITY,
                StepArgs(args.run_id, args.pipeline_ref, index, owner),
                result_type=StepOutcome,
                start_to_close_timeout=timedelta(seconds=options.start_to_close_s),
                heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout_s),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=args.retry_initial_s),
                    maximum_interval=timedelta(seconds=args.retry_max_s),
                    maximum_attempts=args.max_attempts,
                    non_retryable_error_types=NON_RETRYABLE,
                ),
                summary=options.name,
            )
            owner = outcome.owner or owner
            if outcome.status == "running":
                index = outcome.next_step
            elif outcome.status == "paused":
                await workflow.wait_condition(lambda: self._answers > seen)  # noqa: B023 - awaited here
            else:
                return outcome

    async def _construct(
        self, args: RunArgs, index: int, owner: str, options: StepOptions
    ) -> StepOutcome:
        """Top-level step ``index``, a construct, walked part by part, then joined; a part
        waiting for a person pauses the run at the join, and after the answer the walk goes
        on with what is not done."""
        walk = _Walk(args, index, owner, options)
        node = args.nodes[index]
        while True:
            # No answer can come before the run is paused (by the join, below).
            seen = self._answers
            try:
                await walk.node(node, node.name)
                end = await walk.activity(None)  # the join
            except _Ended as ended:
                end = ended.outcome
            except (_Paused, _Inline):
                end = await walk.activity(None)  # the join pauses the run, or runs the rest
            if end.status != "paused":
                return StepOutcome(end.status, end.next_step, end.error)
            await workflow.wait_condition(lambda: self._answers > seen)  # noqa: B023 - awaited here
            walk.epoch, walk.usage = 0, None  # the answer took the run: the next part takes it


class _Ended(Exception):
    """An activity ended the run (a part failed) or its step: the walk stops."""

    def __init__(self, outcome: PartOutcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


class _Paused(Exception):
    """A part waits for a person: its siblings finish, then the join pauses the run."""


class _Inline(Exception):
    """The step's parts would pass ``RunArgs.max_parts``: the join executes the rest."""


def _added(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


class _Walk:
    """One top-level construct's parts, as activities, in the tree's order; what they report
    (lengths, routes, loop decisions, usage) is remembered across a pause."""

    def __init__(self, args: RunArgs, index: int, owner: str, options: StepOptions) -> None:
        self.args, self.index, self.owner, self.options = args, index, owner, options
        self.epoch = 0
        self.usage: dict[str, float] | None = None
        self.done: set[str] = set()
        self.items: dict[str, int] = {}
        self.routes: dict[str, str] = {}
        self.finished: dict[str, bool] = {}
        self.left = args.max_parts

    async def activity(self, part: str | None, *, enter: bool = False) -> PartOutcome:
        args = self.args
        outcome: PartOutcome = await workflow.execute_activity(
            PART_ACTIVITY,
            PartArgs(
                args.run_id,
                args.pipeline_ref,
                self.index,
                self.owner,
                part,
                enter,
                self.epoch,
                self.usage,
            ),
            result_type=PartOutcome,
            start_to_close_timeout=timedelta(seconds=self.options.start_to_close_s),
            heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout_s),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=args.retry_initial_s),
                maximum_interval=timedelta(seconds=args.retry_max_s),
                maximum_attempts=args.max_attempts,
                non_retryable_error_types=NON_RETRYABLE,
            ),
            summary=part or self.options.name,
        )
        return outcome

    async def part(self, part: str, *, enter: bool = False) -> None:
        if self.left <= 0:
            raise _Inline(part)
        self.left -= 1
        outcome = await self.activity(part, enter=enter)
        if outcome.status != "running" or outcome.next_step != self.index:
            raise _Ended(outcome)
        self.epoch = self.epoch or outcome.epoch
        base = outcome.base if self.usage is None else self.usage
        self.usage = _added(base, outcome.spent)
        self.items.update(outcome.items)
        self.routes.update(outcome.routes)
        self.finished.update(outcome.finished)
        if outcome.paused:
            raise _Paused(part)

    async def node(self, node: Node, path: str) -> None:
        """The parts of the construct ``node`` at ``path`` (its join is the next activity's)."""
        if node.kind == "parallel":
            await self.part(path, enter=True)
            branches = [(f"{path}/{k}", steps) for k, steps in node.scopes.items()]
            await self.fan(branches, node.concurrency)
        elif node.kind == "map":
            await self.part(path, enter=True)
            body = node.scopes["body"]
            items = [(f"{path}[{i}]", body) for i in range(self.items.get(path, 0))]
            if len(items) > self.left:
                raise _Inline(path)  # the whole map in the join rather than part of it here
            await self.fan(items, node.concurrency)
        elif node.kind == "loop":
            for n in range(1, node.max_iterations + 1):
                where = f"{path}#{n}"
                await self.scope(where, node.scopes["body"])
                if self.finished.get(where, True):
                    break
        elif node.kind == "branch":
            if path not in self.routes:
                await self.part(f"{path}/{node.router}")
            key = self.routes.get(path)
            if key is not None:
                await self.scope(f"{path}/{key}", node.scopes.get(key, []))

    async def scope(self, where: str, steps: list[Node]) -> None:
        """One part; a scope holding constructs is walked, then executed (its join)."""
        if where in self.done:
            return
        for node in steps:
            if node.kind != "step":
                await self.node(node, f"{where}/{node.name}")
        await self.part(where)
        self.done.add(where)

    async def fan(self, scopes: list[tuple[str, list[Node]]], concurrency: int) -> None:
        """Scopes at once, at most ``concurrency``; a run that ended stops the walk at once,
        a part that waits for a person (or past the budget) lets the others finish first."""
        limit = asyncio.Semaphore(concurrency or max(len(scopes), 1))
        stopped: list[_Paused | _Inline] = []

        async def one(where: str, steps: list[Node]) -> None:
            async with limit:
                try:
                    await self.scope(where, steps)
                except (_Paused, _Inline) as exc:
                    stopped.append(exc)

        await asyncio.gather(*(one(where, steps) for where, steps in scopes))
        for exc in stopped:  # a pause first: the join pauses the run either way
            if isinstance(exc, _Paused):
                raise exc
        if stopped:
            raise stopped[0]
