"""The evaluation engine: sampling on the hot path, judging in the background.

:meth:`EvalEngine.on_run_finalized` runs inside the runner's ``flujo_run_finalized`` hook: it
takes the sampling decisions (a hash per evaluator, microseconds) and queues jobs; workers
scheduled on the runner's :class:`~flujo.application.background.BackgroundTaskManager` run
them. The run never waits for an evaluator.

Each job ends in exactly one row of ``evaluations``: ``scored``, or a status saying why there
is no score (``judge_error``, ``timeout``, ``parse_error``, ``skipped_budget``,
``skipped_circuit``, ``not_done``). Nothing here raises into a run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import EvaluationResult
from flujo.domain.models import RunStatus
from flujo_evals import storage
from flujo_evals.errors import EvaluationFailed
from flujo_evals.sampling import is_sampled

if TYPE_CHECKING:
    from flujo.application.background import BackgroundTaskManager
    from flujo.application.runtime import Runtime
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import Evaluator, StateBackend
    from flujo.domain.models import RunRecord
    from flujo.domain.operations import Operation, OperationValue
    from flujo_evals.settings import EvalSettings

_log = logging.getLogger("flujo_evals")

SERVICE = "evals"
"""The name of the engine in ``runtime.services`` (``runner.services["evals"]``)."""


@dataclass(slots=True)
class Job:
    """One evaluation to do: ``evaluator`` on ``step`` of ``run``, with its sample weight."""

    run: RunRecord
    step: str
    evaluator: str
    weight: float


@dataclass(slots=True)
class CircuitBreaker:
    """Stops calling an evaluator after ``threshold`` consecutive hard failures.

    Open for ``cooldown_s``; then one trial call is let through (half-open): a success closes
    the breaker, a failure opens it again.
    """

    threshold: int
    cooldown_s: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial: bool = False

    @property
    def is_open(self) -> bool:
        """True while calls are being skipped."""
        return self.opened_at is not None and not self._cooled_down()

    def _cooled_down(self) -> bool:
        return self.opened_at is not None and self.clock() - self.opened_at >= self.cooldown_s

    def allow(self) -> bool:
        """Whether a call may go ahead now (claims the trial call when half-open)."""
        if self.opened_at is None:
            return True
        if self._cooled_down() and not self._trial:
            self._trial = True
            return True
        return False

    def release(self) -> None:
        """Give back a trial call claimed by :meth:`allow` that was not made."""
        self._trial = False

    def record(self, *, ok: bool, hard_failure: bool) -> None:
        """Record a call's outcome; ``hard_failure`` counts towards opening."""
        self._trial = False
        if ok:
            self.failures, self.opened_at = 0, None
            return
        if not hard_failure:
            return
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self.clock()


@dataclass(slots=True)
class Outcome:
    """What :meth:`EvalEngine.run_job` did."""

    status: str | None
    """The row's status, or ``None`` when no row was written (already evaluated, no step)."""
    cost_usd: float = 0.0
    billable: bool = False


@dataclass(slots=True)
class _Budget:
    in_flight: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def utc_midnight(now: float) -> float:
    """The start of ``now``'s UTC day, as a timestamp."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


class EvalEngine:
    """Decides, runs and records evaluations for one runner (or one CLI backfill).

    :param settings: the ``[eval]`` section.
    :param evaluators: the configured evaluators, by name, in configuration order.
    :param state: the state backend holding ``evaluations``.
    :param tasks: where workers are scheduled (``None`` for :meth:`run_job` callers only).
    :param clock: wall clock for ``created_at`` and budgets (tests pass a fake one).
    :param sleep: how retries wait (tests pass a no-op).
    :param runtime: the runner this engine serves: each evaluation is reported to its
        operation wrappers (``eval.evaluate``: a tracing plugin's span linked to the run's
        trace, with the score), whichever task runs it.
    """

    def __init__(
        self,
        settings: EvalSettings,
        evaluators: Mapping[str, Evaluator],
        state: StateBackend,
        tasks: BackgroundTaskManager | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        runtime: Runtime | None = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.evaluators = dict(evaluators)
        self.state = state
        self.tasks = tasks
        self.clock = clock
        self._sleep = sleep
        self._names = tuple(self.evaluators)
        self._steps = tuple(settings.steps) or (storage.FINAL_OUTPUT,)
        self._queue: deque[Job] = deque()
        self._workers = 0
        self._active = 0
        self._idle: asyncio.Event | None = None
        self._budget = _Budget()
        self._avg_cost: float | None = None
        self.breakers = {
            name: CircuitBreaker(
                settings.circuit_breaker_threshold, settings.circuit_breaker_cooldown_s
            )
            for name in self._names
        }
        self.scheduled = 0
        """Jobs queued since the engine started (sampled decisions)."""

    # ------------------------------------------------------------------ hot path

    def decisions(self, run_id: str, status: RunStatus) -> list[tuple[str, str, float]]:
        """``(step, evaluator, sample_weight)`` for each evaluation a run with this id and
        final status gets (deterministic: live runs and backfills agree)."""
        s = self.settings
        found: list[tuple[str, str, float]] = []
        if status is not RunStatus.SUCCEEDED and s.evaluate_on_failure:
            for name in self._names:
                found.extend((step, name, 1.0) for step in self._steps)
            return found
        rate = s.sampling_rate
        for name in self._names:
            if is_sampled(s.salt, run_id, name, rate):
                found.extend((step, name, 1.0 / rate) for step in self._steps)
        return found

    def decide(self, run: RunRecord) -> list[Job]:
        """The jobs ``run`` gets: one per (step, evaluator) that samples it."""
        return [Job(run, step, name, w) for step, name, w in self.decisions(run.run_id, run.status)]

    def on_run_finalized(self, run: RunRecord) -> int:
        """Queue ``run``'s sampled evaluations and make sure workers run; never blocks.

        Returns how many jobs were queued.
        """
        jobs = self.decide(run)
        if not jobs:
            return 0
        self._queue.extend(jobs)
        self.scheduled += len(jobs)
        self._spawn_workers()
        return len(jobs)

    def _spawn_workers(self) -> None:
        if self.tasks is None:
            return
        while self._workers < min(self.settings.concurrency, len(self._queue)):
            self._workers += 1
            if not self.tasks.schedule("flujo-evals", self._worker):
                self._workers -= 1
                return

    @property
    def pending(self) -> int:
        """Jobs queued and not started yet."""
        return len(self._queue)

    # ------------------------------------------------------------------ workers

    async def _worker(self) -> None:
        current: Job | None = None
        try:
            while self._queue:
                current = self._queue.popleft()
                self._active += 1
                try:
                    await self.run_job(current)
                finally:
                    self._active -= 1
                    if self._active == 0 and self._idle is not None:
                        self._idle.set()
                current = None
        except asyncio.CancelledError:
            # The runner is closing and its drain deadline passed: what is left is recorded
            # as not done (a backfill can pick it up), then the cancellation goes on.
            left = [current] if current is not None else []
            left.extend(self._queue)
            self._queue.clear()
            for job in left:
                await self._record_safely(
                    job, storage.NOT_DONE, reasoning="the runner closed before it was evaluated"
                )
            raise
        finally:
            self._workers -= 1

    async def flush(self) -> None:
        """Run every queued job now, in this task, and wait for the ones workers are running
        (for tests and scripts that read rows while the runner is open)."""
        while self._queue:
            await self.run_job(self._queue.popleft())
        while self._active:
            self._idle = asyncio.Event()
            await self._idle.wait()

    # ------------------------------------------------------------------ one job

    def view(self, job: Job) -> RunRecord | None:
        """The run as ``job``'s evaluator sees it: ``output`` is the judged step's output.

        ``None`` when the configured step did not run in this run.
        """
        if job.step == storage.FINAL_OUTPUT:
            return job.run
        step = next((s for s in job.run.steps if s.name == job.step), None)
        if step is None:
            return None
        return replace(job.run, output=step.output, error=step.error or job.run.error)

    async def run_job(self, job: Job) -> Outcome:
        """Evaluate ``job`` and record one row; never raises (errors are rows or logs)."""
        evaluator = self.evaluators[job.evaluator]
        rubric_hash = str(getattr(evaluator, "rubric_hash", ""))
        billable = not getattr(evaluator, "free", False)
        try:
            if await storage.has_final_row(
                self.state, job.run.run_id, job.step, job.evaluator, rubric_hash
            ):
                return Outcome(None)
        except Exception as exc:  # noqa: BLE001 - the state backend failing must not reach runs
            _log.warning("flujo-evals: cannot read evaluations: %s", exc)
            return Outcome(None)
        view = self.view(job)
        if view is None:
            return Outcome(None)
        breaker = self.breakers[job.evaluator]
        if not breaker.allow():
            await self._record_safely(
                job,
                storage.SKIPPED_CIRCUIT,
                reasoning=f"circuit breaker open after {breaker.failures} consecutive failures",
                billable=billable,
            )
            return Outcome(storage.SKIPPED_CIRCUIT, billable=billable)
        if billable:
            refused = await self._reserve()
            if refused is not None:
                breaker.release()
                await self._record_safely(
                    job, storage.SKIPPED_BUDGET, reasoning=refused, billable=True
                )
                return Outcome(storage.SKIPPED_BUDGET, billable=True)
        try:
            return await self._reported_call(job, evaluator, view, rubric_hash, billable, breaker)
        finally:
            if billable:
                self._budget.in_flight -= 1

    async def _reported_call(
        self,
        job: Job,
        evaluator: Evaluator,
        view: RunRecord,
        rubric_hash: str,
        billable: bool,
        breaker: CircuitBreaker,
    ) -> Outcome:
        """:meth:`_call`, reported as an ``eval.evaluate`` operation serving the run judged
        (done apart from it, in the background): never the run's data, the reasoning or the
        rubric; the score, label and status."""
        from flujo.plugin import operation

        attributes: dict[str, OperationValue] = {
            "flujo.eval.evaluator": job.evaluator,
            "flujo.eval.step": job.step,
            "flujo.eval.sample_weight": job.weight,
        }
        runs = [job.run.run_id]
        with operation("eval.evaluate", attributes, runs=runs, runtime=self.runtime) as op:
            return await self._call(job, evaluator, view, rubric_hash, billable, breaker, op)

    async def _call(
        self,
        job: Job,
        evaluator: Evaluator,
        view: RunRecord,
        rubric_hash: str,
        billable: bool,
        breaker: CircuitBreaker,
        op: Operation,
    ) -> Outcome:
        s = self.settings
        started = time.perf_counter()
        cost, tokens, attempts = 0.0, 0, 0
        status, reasoning = storage.JUDGE_ERROR, ""
        result: EvaluationResult | None = None
        while True:
            attempts += 1
            retryable = hard = False
            try:
                async with asyncio.timeout(s.timeout_s):
                    result = await evaluator.evaluate(view)
                _check(result)
            except TimeoutError:
                status, retryable = storage.TIMEOUT, True
                reasoning = f"no answer in {s.timeout_s:g}s"
            except EvaluationFailed as exc:
                status, reasoning = exc.status, str(exc)
                retryable, hard = exc.retryable, exc.trips_breaker
                cost += exc.cost_usd
                tokens += exc.tokens
            except Exception as exc:  # noqa: BLE001 - a broken evaluator is a recorded error
                status, retryable = storage.JUDGE_ERROR, True
                reasoning = f"{type(exc).__name__}: {exc}"
            else:
                breaker.record(ok=True, hard_failure=False)
                cost += float(result.cost_usd)
                tokens += int(getattr(result, "tokens", 0) or 0)
                status = storage.SCORED
                break
            result = None
            breaker.record(ok=False, hard_failure=hard or status == storage.TIMEOUT)
            if not retryable or attempts > s.max_retries or not breaker.allow():
                break
            await self._sleep(s.retry_backoff_s * 2 ** (attempts - 1))
        row = self._row(
            job,
            rubric_hash,
            status,
            score=result.score if result is not None else None,
            label=result.label if result is not None else None,
            reasoning=result.reasoning if result is not None else reasoning,
            tokens=tokens,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            attempts=attempts,
            billable=billable,
            judge_model=getattr(evaluator, "model_name", None),
        )
        op.set(
            {
                f"flujo.eval.{key}": row[key]
                for key in ("status", "score", "label", "attempts", "tokens", "cost_usd")
                if row[key] is not None
            }
        )
        if status != storage.SCORED:
            op.fail(status)  # the reason stays in the row: it may quote the run
        await self._write(row)
        return Outcome(status, cost_usd=cost, billable=billable)

    # ------------------------------------------------------------------ budgets

    async def _reserve(self) -> str | None:
        """Claim one paid evaluation within the budgets, or say which budget refuses."""
        s = self.settings
        async with self._budget.lock:
            now = self.clock()
            in_flight = self._budget.in_flight
            try:
                if s.max_evals_per_hour is not None:
                    done = await storage.billable_calls_since(self.state, now - 3600.0)
                    if done + in_flight >= s.max_evals_per_hour:
                        return f"max_evals_per_hour={s.max_evals_per_hour} reached"
                if s.max_judge_cost_usd_per_day is not None:
                    spent = await storage.billable_cost_since(self.state, utc_midnight(now))
                    if self._avg_cost is None:
                        self._avg_cost = await storage.average_billable_cost(self.state)
                    if spent + in_flight * self._avg_cost >= s.max_judge_cost_usd_per_day:
                        return (
                            f"max_judge_cost_usd_per_day={s.max_judge_cost_usd_per_day:g} "
                            f"reached (spent {spent:.4f})"
                        )
            except Exception as exc:  # noqa: BLE001 - unknown spend: refuse rather than overspend
                return f"budget unknown: {type(exc).__name__}: {exc}"
            self._budget.in_flight += 1
            return None

    # ------------------------------------------------------------------ rows

    def _row(
        self,
        job: Job,
        rubric_hash: str,
        status: str,
        *,
        score: float | None = None,
        label: str | None = None,
        reasoning: str | None = None,
        tokens: int = 0,
        cost_usd: float = 0.0,
        latency_ms: float = 0.0,
        attempts: int = 0,
        billable: bool = False,
        judge_model: str | None = None,
    ) -> dict[str, Any]:
        if status == storage.SCORED and cost_usd > 0 and billable:
            # Keep the running estimate of a paid evaluation's cost fresh for the budget.
            old = self._avg_cost
            self._avg_cost = cost_usd if not old else old * 0.9 + cost_usd * 0.1
        return {
            "id": uuid.uuid4().hex,
            "run_id": job.run.run_id,
            "step": job.step,
            "evaluator": job.evaluator,
            "rubric_hash": rubric_hash,
            "judge_model": judge_model,
            "status": status,
            "score": score,
            "label": label,
            "reasoning": reasoning,
            "sample_weight": job.weight,
            "tokens": tokens,
            "cost_usd": cost_usd,
            "latency_ms": latency_ms,
            "attempts": attempts,
            "billable": 1 if billable else 0,
            "created_at": self.clock(),
        }

    async def _write(self, row: Mapping[str, Any]) -> None:
        try:
            await storage.write_row(self.state, row)
        except Exception as exc:  # noqa: BLE001 - a failed write is logged, never raised
            _log.warning("flujo-evals: cannot record evaluation of run %s: %s", row["run_id"], exc)

    async def _record_safely(
        self, job: Job, status: str, *, reasoning: str, billable: bool = False
    ) -> None:
        evaluator = self.evaluators.get(job.evaluator)
        await self._write(
            self._row(
                job,
                str(getattr(evaluator, "rubric_hash", "")),
                status,
                reasoning=reasoning,
                billable=billable,
                judge_model=getattr(evaluator, "model_name", None),
            )
        )


def _check(result: Any) -> None:
    """Reject what an evaluator returned when it is not a valid result (a ``parse_error``)."""
    if not isinstance(result, EvaluationResult):
        raise EvaluationFailed(
            f"evaluate returned {type(result).__name__}, not an EvaluationResult",
            status=storage.PARSE_ERROR,
        )
    score = result.score
    if (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not 0.0 <= score <= 1.0
    ):
        raise EvaluationFailed(f"score {score!r} is not in [0, 1]", status=storage.PARSE_ERROR)


def build_engine(
    config: FlujoConfig,
    state: StateBackend,
    tasks: BackgroundTaskManager | None = None,
    *,
    runtime: Runtime | None = None,
) -> EvalEngine:
    """An engine for ``config``'s ``[eval]`` section, with its evaluators created.

    :raises ConfigError: an unknown evaluator, a missing rubric file, a bad setting.
    """
    from flujo.domain.errors import ConfigError
    from flujo_evals.settings import SECTION, EvalSettings

    settings = config.section(SECTION, EvalSettings)
    manager = config.plugin_manager
    if manager is None:
        raise ConfigError(f"[{SECTION}] needs a configuration loaded with its plugins")
    evaluators: dict[str, Evaluator] = {}
    for name in settings.evaluators:
        evaluator = manager.registry.create("evaluators", name, config)
        if not callable(getattr(evaluator, "evaluate", None)):
            raise ConfigError(f"[{SECTION}] evaluator {name!r} has no evaluate(run) method")
        evaluators[name] = evaluator
    return EvalEngine(settings, evaluators, state, tasks, runtime=runtime)
