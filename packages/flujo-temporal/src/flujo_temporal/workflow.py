"""The Temporal workflow a Flujo run is: deterministic code that only calls activities.

Nothing here does I/O, reads a clock or imports Flujo: the run's state lives in Flujo's state
database and in activity results. Each top-level step is one activity (``flujo.step``) executed
by a worker through Flujo's own step machinery (:mod:`flujo_temporal.activities`). A step that
pauses for a person (a human step) makes the workflow wait for the ``answered`` signal, which
``flujo runs approve`` / ``reject`` sends once the answer is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import is_cancelled_exception

WORKFLOW_NAME = "flujo.run"
STEP_ACTIVITY = "flujo.step"
ANSWERED_SIGNAL = "answered"
CANCELLED_ACTIVITY = "flujo.cancelled"
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
        while True:
            if index >= len(args.steps):
                # A run with no step left that is still running cannot happen: the activity of
                # the last step returns the run's final status. Fail loudly, never loop.
                return StepOutcome("failed", index, f"no step {index} in the pipeline")
            options = args.steps[index]
            self._index = index
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
