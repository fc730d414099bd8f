"""Where the engine seam meets the rest of Flujo: answers given through the Python API (what
flujo-ui's approve button calls) reach the workflow, as `flujo runs approve` does."""

from __future__ import annotations

import asyncio

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from flujo_temporal.worker import worker
from temporal_testkit import Project, project_toml, wait_for_status

from flujo import Flujo
from flujo.domain.models import RunStatus
from flujo.plugin import RunFinalized, RunStarted, hookimpl, load_target

APPROVAL = """
from flujo import Step


def draft(text: str) -> str:
    return "draft:" + text


def send(text: str) -> str:
    return "sent:" + text


pipeline = Step.from_callable(draft) >> Step.human("check") >> Step.from_callable(send)
"""


async def test_approve_async_continues_the_workflow(project: Project) -> None:
    """`Flujo.approve_async` stores the answer and signals the workflow: the run finishes."""
    ref = project.write("approval.py", APPROVAL) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")
        await wait_for_status(runner, run_id, RunStatus.PAUSED)
        await runner.approve_async(run_id, reason="ok")
        result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "sent:draft:hi")


async def test_a_local_runner_approving_signals_the_runs_own_engine(project: Project) -> None:
    """The engine told of an answer is the one the run records, not the answering runner's
    ``[engine] kind``: a runner (a web app, a script) configured ``local`` approving a run that
    Temporal drives still continues its workflow."""
    ref = project.write("approval.py", APPROVAL) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config):
        async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
            run_id = await engine.submit(runner, "hi")
            await wait_for_status(runner, run_id, RunStatus.PAUSED)
        local = Flujo(load_target(ref), config=config, pipeline_ref=ref, engine="local")
        async with local:
            await local.approve_async(run_id, reason="ok")
            result = await asyncio.wait_for(engine.wait(local, run_id), 20)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "sent:draft:hi")


async def test_reject_async_ends_the_workflow(project: Project) -> None:
    """`Flujo.reject_async` ends the run failed and its workflow with it (nothing waits on)."""
    ref = project.write("approval.py", APPROVAL) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")
        await wait_for_status(runner, run_id, RunStatus.PAUSED)
        await runner.reject_async(run_id, reason="no")
        result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
        answers = (
            await (await engine.client()).get_workflow_handle(f"flujo-{run_id}").query("answers")
        )
    assert result.status is RunStatus.FAILED
    assert answers == 1


async def test_a_workflow_that_fails_stores_the_run_failed(project: Project) -> None:
    """A workflow that fails outright (here: the worker cannot load the pipeline, which no
    retry fixes) leaves the run stored `failed` with a one-line reason, not `running`; resuming
    it (a new workflow, which cannot load it either) reports it failed."""
    path = project.write("gone.py", APPROVAL)
    ref = path + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")  # no worker yet: nothing ran
        (project.root / "gone.py").unlink()
        async with worker(config):
            result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
            stored = await runner.runtime.state.get_run(run_id)
            # `flujo runs resume` hands it to its engine, whose new workflow cannot load the
            # pipeline either: it stays failed as stored. Nothing executes it locally.
            resumed = await asyncio.wait_for(runner.resume_async(run_id), 20)
    assert result.status is RunStatus.FAILED
    assert resumed.status is RunStatus.FAILED
    assert stored is not None
    assert stored.status is RunStatus.FAILED
    error = stored.error or ""
    assert "\n" not in error
    assert f"Temporal workflow flujo-{run_id} failed at step 0" in error
    assert "no such file" in error


async def test_the_local_stale_drain_never_takes_a_run_temporal_drives(project: Project) -> None:
    """A worker outage lets the run's lease lapse; `Flujo.resume_stale_async` (what
    `flujo runs resume --stale` does) still leaves it to Temporal, which finishes it."""
    source = APPROVAL.replace('Step.human("check") >> ', "")
    ref = project.write("straight.py", source) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")  # no worker: its lease lapses unrenewed
        await asyncio.sleep(config.state.lease_s + 0.5)
        assert await runner.resume_stale_async() == []
        stored = await runner.runtime.state.get_run(run_id)
        assert stored is not None
        assert (stored.status, stored.current_step, stored.engine) == (
            RunStatus.RUNNING,
            0,
            "temporal",
        )
        async with worker(config):
            result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "sent:draft:hi")


async def test_the_local_stale_drain_never_takes_an_answered_run_temporal_drives(
    project: Project, flujo_state_uri: str
) -> None:
    """An answered run is stored `interrupted`, which the local stale drain takes at once (no
    lease to lapse): one Temporal drives is still left to its workflow, on either backend,
    and finishes there once a worker is back."""
    project.toml.write_text(project_toml(project.address, project.task_queue, flujo_state_uri))
    ref = project.write("approval.py", APPROVAL) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        async with worker(config):
            run_id = await engine.submit(runner, "hi")
            await wait_for_status(runner, run_id, RunStatus.PAUSED)
        await runner.approve_async(run_id, reason="ok")  # signalled; no worker to go on yet
        assert await asyncio.wait_for(runner.resume_stale_async(), 20) == []
        stored = await runner.runtime.state.get_run(run_id)
        assert stored is not None
        assert (stored.status, stored.engine) == (RunStatus.INTERRUPTED, "temporal")
        async with worker(config):
            result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "sent:draft:hi")


class HookSpy:
    """Counts the run lifecycle hooks a worker's runners fire."""

    def __init__(self) -> None:
        self.started: list[tuple[int, bool]] = []
        self.finalized: list[str] = []

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.started.append((event.start, event.resumed))

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized) -> None:
        self.finalized.append(event.run.status.value)


THREE = """
from flujo import Step

pipeline = (
    Step.from_callable(lambda x: x + "a", name="a")
    >> Step.from_callable(lambda x: x + "b", name="b")
    >> Step.from_callable(lambda x: x + "c", name="c")
)
"""


async def test_lifecycle_hooks_see_one_new_run_and_each_later_activity_as_resumed(
    project: Project,
) -> None:
    """Each activity is one execution of the run: the first reports a new run (`resumed` is
    false), every later one a resumed run; the submission, which executes nothing, fires
    nothing; `flujo_run_finalized` fires once."""
    ref = project.write("three.py", THREE) + ":pipeline"
    config = project.config()
    spy = HookSpy()
    assert config.plugin_manager is not None
    assert config.plugin_manager.register(spy, "spy").status == "ok"
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "x")
        assert spy.started == []  # submitted: nothing executed yet
        async with worker(config):
            result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "xabc")
    assert spy.started == [(0, False), (1, True), (2, True)]
    assert spy.finalized == ["succeeded"]


async def test_a_terminated_workflow_is_stored_failed_by_its_waiter(project: Project) -> None:
    """A workflow ended outside its own code (terminated on Temporal) cannot store its run; the
    process waiting on it does, in one line, so the run is not left `running`."""
    ref = project.write("three.py", THREE) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "x")  # no worker: nothing runs
        handle = (await engine.client()).get_workflow_handle(f"flujo-{run_id}")
        await handle.terminate(reason="operator said so")
        result = await asyncio.wait_for(engine.wait(runner, run_id), 20)
        stored = await runner.runtime.state.get_run(run_id)
    assert result.status is RunStatus.FAILED
    assert stored is not None
    assert stored.status is RunStatus.FAILED
    assert f"its Temporal workflow flujo-{run_id} failed" in (stored.error or "")
    assert "\n" not in (stored.error or "")


FLAKY_SECOND = """
from pathlib import Path

from flujo import Step

HERE = Path(__file__).parent


def first(text: str) -> str:
    count = HERE / "first.count"
    count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
    return "a:" + text


def second(text: str) -> str:
    flag = HERE / "failed.once"
    if not flag.exists():
        flag.write_text("1")
        raise RuntimeError("second fails the first time")
    return "b:" + text


pipeline = Step.from_callable(first) >> Step.from_callable(second)
"""


async def test_resuming_a_failed_run_starts_a_new_workflow_from_the_failed_step(
    project: Project,
) -> None:
    """As locally, `resume_async` of a run that failed retries it from the step that failed:
    a new workflow `flujo-<run_id>` (the old one has ended) reopens the run and goes on; the
    committed first step is not executed again."""
    ref = project.write("flaky.py", FLAKY_SECOND) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")
        failed = await asyncio.wait_for(engine.wait(runner, run_id), 20)
        client = await engine.client()
        before = (await client.get_workflow_handle(f"flujo-{run_id}").describe()).run_id
        resumed = await asyncio.wait_for(runner.resume_async(run_id), 20)
        after = (await client.get_workflow_handle(f"flujo-{run_id}").describe()).run_id
        again = await asyncio.wait_for(runner.resume_async(run_id), 20)
    assert failed.status is RunStatus.FAILED
    assert "second fails the first time" in (failed.error or "")
    assert (resumed.status, resumed.output) == (RunStatus.SUCCEEDED, "b:a:hi")
    assert after != before  # a new execution of the same workflow id
    assert (project.root / "first.count").read_text() == "1"
    assert again.status is RunStatus.SUCCEEDED  # succeeded: nothing to reopen


async def test_reopening_never_takes_a_run_that_changed_since_the_resume_read_it(
    project: Project,
) -> None:
    """The reopen activity takes the failed run only at the version its resume read: a run
    another worker took meanwhile (here, live, under its own lease) is left to it, untouched;
    a run that has not ended is never reopened."""
    from flujo_temporal.activities import StepActivities
    from flujo_temporal.workflow import ReopenArgs
    from temporalio.exceptions import ApplicationError

    ref = project.write("flaky.py", FLAKY_SECOND) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    steps = StepActivities(config)
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")
        assert (await asyncio.wait_for(engine.wait(runner, run_id), 20)).status is RunStatus.FAILED
        seen = await runner.runtime.state.get_run(run_id)
        assert seen is not None
        # Another worker takes it first (executing nothing) and holds it.
        await runner.resume_async(run_id, until=seen.current_step, owner="elsewhere")
        taken = await runner.runtime.state.get_run(run_id)
        assert taken is not None
        try:
            outcome = await steps.reopen(ReopenArgs(run_id, ref, "temporal:default", seen.version))
            after = await runner.runtime.state.get_run(run_id)
            refused = ""
            try:
                await steps.reopen(ReopenArgs(run_id, ref, "temporal:default", taken.version))
            except ApplicationError as exc:
                refused = str(exc)
        finally:
            await steps.aclose()
    assert (taken.status, taken.version) == (RunStatus.RUNNING, seen.version + 1)
    assert (outcome.status, outcome.next_step) == ("running", 1)
    assert after is not None
    assert after.version == taken.version  # not taken: the step activities' rules apply
    assert refused.endswith(f"run {run_id} has not ended (running)")
