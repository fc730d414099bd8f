"""Temporal calls aimed at the wrong workflow: a cancel naming a workflow id that is not a
Flujo run's (another team's workflow in the same namespace, named ``flujo-...`` by chance or
on purpose), and an answer to a paused run whose workflow was terminated on Temporal. Flujo
touches only its own workflows, and never tells whoever answered that something continues
the run when nothing does. A real Temporal dev server (loopback)."""

from __future__ import annotations

import uuid

import pytest
from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine, cancel
from temporal_testkit import Project, wait_for_status
from temporalio.client import WorkflowExecutionStatus

from flujo import Flujo
from flujo.domain.errors import UserError
from flujo.domain.models import RunStatus
from flujo.plugin import load_target

APPROVAL = """
from flujo import Step


def draft(text: str) -> str:
    return "draft:" + text


send = Step.from_callable(draft, name="send")
pipeline = Step.from_callable(draft) >> Step.human("check") >> send
"""


async def test_cancel_never_touches_a_workflow_that_is_not_a_flujo_run(project: Project) -> None:
    config = project.config()
    settings = config.section("temporal", TemporalSettings)
    engine = TemporalEngine(settings)
    client = await engine.client()
    run_id = uuid.uuid4().hex
    # Another team's workflow whose id happens to be what Flujo would name this run's.
    foreign = await client.start_workflow(
        "billing.Invoice", id=f"flujo-{run_id}", task_queue=f"other-{run_id}"
    )
    with pytest.raises(UserError, match="not a Flujo run"):
        await cancel(settings, run_id)
    described = await foreign.describe()
    assert described.status is WorkflowExecutionStatus.RUNNING
    history = [e.event_type for e in (await foreign.fetch_history()).events]
    assert 7 not in history  # WORKFLOW_EXECUTION_CANCEL_REQUESTED: never asked
    await foreign.terminate(reason="test over")


async def test_answering_a_run_whose_workflow_was_terminated_says_nothing_continues_it(
    project: Project,
) -> None:
    ref = project.write("approval.py", APPROVAL) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    from flujo_temporal.worker import worker

    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")
        await wait_for_status(runner, run_id, RunStatus.PAUSED)
        handle = (await engine.client()).get_workflow_handle(f"flujo-{run_id}")
        await handle.terminate(reason="operator said so")
        _, next_step = await runner._answer(run_id, True, None, "ok", "ann")
    assert next_step is not None
    assert "terminated" in next_step
    assert "continues on Temporal" not in next_step
