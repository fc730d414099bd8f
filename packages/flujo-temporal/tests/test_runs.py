"""A pipeline with a branch, a parallel and a human approval runs to completion on a real
Temporal dev server; `flujo runs approve` continues it (a signal) and `flujo runs show` reads
it from Flujo's state as for any run."""

from __future__ import annotations

import asyncio
import json

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from flujo_temporal.worker import worker
from temporal_testkit import ENV, Project, calls, wait_for_status

from flujo import Flujo, Step
from flujo.domain.models import RunStatus
from flujo.plugin import load_target
from flujo.testing.cli import run_flujo

TREE = """
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def _note(name: str) -> None:
    with open(HERE / "calls.log", "a") as fh:
        fh.write(name + "\\n")


def triage(text: str) -> str:
    _note("triage")
    return text


def urgent(text: str) -> str:
    _note("urgent")
    return text.upper()


def normal(text: str) -> str:
    _note("normal")
    return text


def left(text: str) -> str:
    _note("left")
    return "L:" + text


def right(text: str) -> str:
    _note("right")
    return "R:" + text


def reply(parts: dict[str, str]) -> str:
    _note("reply")
    return parts["left"] + "|" + parts["right"]


pipeline = (
    Step.from_callable(triage)
    >> Step.branch(
        "route",
        lambda text: "urgent" if "!" in text else "normal",
        {"urgent": Step.from_callable(urgent), "normal": Step.from_callable(normal)},
    )
    >> Step.parallel("fan", {"left": Step.from_callable(left), "right": Step.from_callable(right)})
    >> Step.human("check", prompt="send it?")
    >> Step.from_callable(reply)
)
"""


async def test_branch_parallel_and_approval_run_to_completion(project: Project) -> None:
    ref = project.write("tree.py", TREE) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "help!")
        paused = await wait_for_status(runner, run_id, RunStatus.PAUSED)
        assert "waiting for a person at step 'check' (send it?)" in (paused.error or "")
        # The same command as for a local run; [engine] kind = "temporal" makes it signal.
        approved = run_flujo("runs", "approve", run_id, "--reason", "ok", cwd=project.root, env=ENV)
        assert approved.returncode == 0, approved.stderr
        assert f"run {run_id} continues on Temporal" in approved.stdout
        result = await engine.wait(runner, run_id)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "L:HELP!|R:HELP!"
    assert calls(project.root) == {
        "triage": 1,
        "urgent": 1,
        "left": 1,
        "right": 1,
        "reply": 1,
    }
    shown = run_flujo("runs", "show", run_id, "--json", cwd=project.root, env=ENV)
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert stored["status"] == "succeeded"
    assert [s["name"] for s in stored["steps"]] == ["triage", "route", "fan", "check", "reply"]
    listed = run_flujo("runs", "list", "--json", cwd=project.root, env=ENV)
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]


async def test_run_async_goes_to_the_configured_engine_with_an_embedded_worker(
    project: Project,
) -> None:
    """`Flujo(...).run_async` with `[engine] kind = "temporal"` is a Temporal workflow; with
    `embedded_worker` this process executes it with the runner's own pipeline object (closures
    included: nothing a separate worker could load by reference)."""
    project.toml.write_text(project.toml.read_text() + "embedded_worker = true\n")
    seen: list[int] = []

    def inc(n: int) -> int:
        seen.append(n)
        return n + 1

    pipeline = Step.from_callable(inc) >> Step.from_callable(lambda n: n * 10, name="times")
    async with Flujo(pipeline, config=project.config()) as runner:
        result = await runner.run_async(4)
        stored = await runner.runtime.state.get_run(result.run_id)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, 50)
    assert seen == [4]
    assert stored is not None
    assert [s.name for s in stored.steps] == ["inc", "times"]
    assert stored.pipeline_ref is None  # nothing to load: the embedded worker used the object


STUCK = """
import asyncio
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def first(text: str) -> str:
    return text


async def stuck(text: str) -> str:
    (HERE / "stuck-started").touch()
    await asyncio.sleep(60)  # cancelled long before
    (HERE / "stuck-finished").touch()
    return text


pipeline = Step.from_callable(first) >> Step.from_callable(stuck)
"""


async def test_cancel_goes_through_temporal_and_is_stored(project: Project) -> None:
    """`flujo temporal cancel` cancels the workflow and the step in progress; the run is stored
    failed, saying it was cancelled, and the cancelled step never commits."""
    import asyncio

    ref = project.write("stuck.py", STUCK) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "x")
        for _ in range(600):  # bounded: 60 s
            if (project.root / "stuck-started").exists():
                break
            await asyncio.sleep(0.1)
        cancelled = await asyncio.to_thread(
            run_flujo,
            "temporal",
            "cancel",
            run_id,
            cwd=project.root,
            env={**ENV, "PYTHONFAULTHANDLER": "1"},
        )
        assert cancelled.returncode == 0, cancelled.stderr
        result = await engine.wait(runner, run_id)
    assert result.status is RunStatus.FAILED
    assert f"cancelled on Temporal (workflow flujo-{run_id}) at step 1" in (result.error or "")
    assert [s.name for s in result.steps] == ["first"]
    assert not (project.root / "stuck-finished").exists()


async def test_run_async_returns_paused_and_resume_async_waits_for_the_workflow(
    project: Project,
) -> None:
    """The same code as on the local engine: `run_async` returns the run `paused` at a human
    step (it does not wait for a workflow that waits for a person), and after an approval
    `resume_async` hands the run back to its workflow (not executed here too) and returns its
    result, even once the workflow has finished it; a second human step pauses it again. Steps
    before a pause run once."""
    project.toml.write_text(project.toml.read_text() + "embedded_worker = true\n")
    seen: list[str] = []

    def draft(text: str) -> str:
        seen.append("draft")
        return "draft:" + text

    def send(text: str) -> str:
        seen.append("send")
        return "sent:" + text

    pipeline = (
        Step.from_callable(draft)
        >> Step.human("check")
        >> Step.human("again")
        >> Step.from_callable(send)
    )
    async with Flujo(pipeline, config=project.config()) as runner:
        paused = await asyncio.wait_for(runner.run_async("hi"), 60)
        assert paused.status is RunStatus.PAUSED
        assert seen == ["draft"]
        await runner.approve_async(paused.run_id, reason="ok")
        again = await asyncio.wait_for(runner.resume_async(paused.run_id), 60)
        assert (again.run_id, again.status) == (paused.run_id, RunStatus.PAUSED)
        await runner.approve_async(paused.run_id, reason="ok")
        # The workflow goes on at the answer, so the run may end before the author's
        # `resume_async` (it does in the support-desk demo): that returns it as it ended.
        await wait_for_status(runner, paused.run_id, RunStatus.SUCCEEDED)
        done = await asyncio.wait_for(runner.resume_async(paused.run_id), 60)
        stored = await runner.runtime.state.get_run(paused.run_id)
    assert (done.status, done.output) == (RunStatus.SUCCEEDED, "sent:draft:hi")
    assert seen == ["draft", "send"]
    assert stored is not None
    assert [s.name for s in stored.steps] == ["draft", "check", "again", "send"]
