"""Runs a pipeline's steps in order, persisting each result before the next step starts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flujo.application.step_coordinator import StepCoordinator
from flujo.domain.events import RunFinalized, StepCompleted
from flujo.domain.models import (
    Pipeline,
    PipelineResult,
    RunRecord,
    RunStatus,
    StepResult,
    StepStatus,
    Usage,
    UsageLimits,
)

if TYPE_CHECKING:
    from flujo.application.runtime import Runtime
    from flujo.domain.context import PipelineContext

_RUN_STATUS = {
    StepStatus.FAILED: RunStatus.FAILED,
    StepStatus.BLOCKED: RunStatus.BLOCKED,
    StepStatus.LIMIT_EXCEEDED: RunStatus.LIMIT_EXCEEDED,
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
        # Looked up once: with no observers installed the hot path makes no hook calls.
        self._step_observers = plugins.implementations("flujo_step_completed")
        self._run_observers = plugins.implementations("flujo_run_finalized")

    async def execute(
        self,
        run: RunRecord,
        context: PipelineContext,
        *,
        start: int,
        data: Any,
        previous: list[StepResult],
    ) -> PipelineResult:
        """Run steps ``start..`` of the pipeline on ``data`` and finalize the run."""
        state = self.runtime.state
        usage = run.usage
        steps = list(previous)
        status = RunStatus.SUCCEEDED
        error: str | None = None
        for index in range(start, len(self.pipeline.steps)):
            step = self.pipeline.steps[index]
            result = await self.coordinator.execute_step(
                step, data, context, run_id=run.run_id, run_usage=usage, limits=self.limits
            )
            usage.add(result.usage)
            steps.append(result)
            await state.save_step(
                run.run_id, index, result, context_json=context.model_dump_json(), usage=usage
            )
            if self._step_observers:
                event = StepCompleted(
                    run.run_id, run.pipeline_name, index, result, data, context, step.tags
                )
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
        return await self.persist_and_finalize(run, context, status, output, error, steps, usage)

    async def persist_and_finalize(
        self,
        run: RunRecord,
        context: PipelineContext,
        status: RunStatus,
        output: Any,
        error: str | None,
        steps: list[StepResult],
        usage: Usage,
    ) -> PipelineResult:
        """Write the final run row, then let plugins observe the finished run."""
        await self.runtime.state.finalize_run(
            run.run_id,
            status,
            output=output,
            error=error,
            context_json=context.model_dump_json(),
            usage=usage,
        )
        if self._run_observers:
            run.status, run.output, run.error, run.usage = status, output, error, usage
            run.context = context.model_dump(mode="json")
            run.steps = steps
            run.updated_at = time.time()
            self._observed(
                self.runtime.plugins.notify(
                    self._run_observers, event=RunFinalized(run), runtime=self.runtime
                )
            )
        return PipelineResult(run.run_id, status, output, steps, usage, error)

    def _observed(self, errors: list[str]) -> None:
        for message in errors:
            self.runtime.tasks.record_failure("observer", message)
