"""A Temporal worker that executes Flujo runs: the workflow and the step activity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from temporalio.worker import Worker

from flujo_temporal.activities import StepActivities
from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import connect
from flujo_temporal.workflow import FlujoRun

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flujo import Flujo
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import GovernancePolicy


@asynccontextmanager
async def worker(
    config: FlujoConfig,
    *,
    task_queue: str | None = None,
    policies: Sequence[GovernancePolicy] = (),
    runners: Mapping[str, Flujo[Any]] | None = None,
    steps: StepActivities | None = None,
) -> AsyncIterator[Worker]:
    """A running worker polling ``task_queue`` (else ``[temporal] task_queue``); on exit it
    stops polling, lets the steps in progress finish, and closes its runners. ``runners``
    execute the pipelines of those references instead of loading them (not closed here);
    ``steps`` is the activity object to use (made here otherwise)."""
    settings = config.section("temporal", TemporalSettings)
    client = await connect(settings)
    steps = steps or StepActivities(config, policies=policies, runners=runners)
    running = Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[FlujoRun],
        activities=[steps.step, steps.part, steps.cancelled, steps.reopen],
        max_concurrent_activities=settings.max_concurrent_activities,
    )
    try:
        async with running:
            yield running
    finally:
        await steps.aclose()
