"""A worker SIGKILLed in the middle of a run: another worker finishes it, and no step that
completed (a top-level step, or a branch of a parallel step) is executed again."""

from __future__ import annotations

import os
import signal
import subprocess

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from temporal_testkit import Project, calls, start_worker, stop, wait_for_calls

from flujo import Flujo
from flujo.domain.models import RunStatus
from flujo.plugin import load_target

SLOW = """
import asyncio
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def _note(name: str) -> None:
    with open(HERE / "calls.log", "a") as fh:
        fh.write(name + "\\n")


def first(text: str) -> str:
    _note("first")
    return text


def fast(text: str) -> str:
    _note("fast")
    return "fast:" + text


async def slow(text: str) -> str:
    _note("slow")
    # Blocks (awaiting) until the test has killed the first worker, at most 60 s.
    for _ in range(600):
        if (HERE / "killed").exists():
            return "slow:" + text
        await asyncio.sleep(0.1)
    raise RuntimeError("the test never killed the worker")


def last(parts: dict[str, str]) -> str:
    _note("last")
    return parts["fast"] + "+" + parts["slow"]


pipeline = (
    Step.from_callable(first)
    >> Step.parallel("fan", {"fast": Step.from_callable(fast), "slow": Step.from_callable(slow)})
    >> Step.from_callable(last)
)
"""


async def test_sigkilled_worker_another_finishes_without_rerunning_steps(project: Project) -> None:
    ref = project.write("slow.py", SLOW) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    first_worker = start_worker(project.root)
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
            run_id = await engine.submit(runner, "x")
            # "fast" is committed, "slow" is running: kill the worker mid-step, mid-parallel.
            await wait_for_calls(project.root, "fast", "slow")
            os.killpg(first_worker.pid, signal.SIGKILL)
            first_worker.wait(10)
            (project.root / "killed").touch()
            second_worker = start_worker(project.root)
            result = await engine.wait(runner, run_id)
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert result.output == "fast:x+slow:x"
        # The killed step ran again (it never finished); nothing that finished did.
        assert calls(project.root) == {"first": 1, "fast": 1, "slow": 2, "last": 1}
    finally:
        stop(first_worker)
        if second_worker is not None:
            stop(second_worker)
