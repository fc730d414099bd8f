"""A worker SIGKILLed in the middle of a run, inside a map item inside a parallel branch (each
its own activity): another worker finishes the run, and no step that completed (a top-level
step, the other branch, the other items) is executed again."""

from __future__ import annotations

import os
import signal
import subprocess

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from temporal_testkit import (
    Project,
    calls,
    start_worker,
    stop,
    wait_for_calls,
    wait_for_committed,
)

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


def split(text: str) -> list[str]:
    _note("split")
    return [text + "0", text + "1", text + "2"]


async def work(item: str) -> str:
    _note("work:" + item)
    if item.endswith("1"):
        # Blocks (awaiting) until the test has killed the first worker, at most 60 s.
        for _ in range(600):
            if (HERE / "killed").exists():
                return "slow:" + item
            await asyncio.sleep(0.1)
        raise RuntimeError("the test never killed the worker")
    return "done:" + item


def last(parts: dict) -> str:
    _note("last")
    return parts["fast"] + "+" + ",".join(parts["items"])


pipeline = (
    Step.from_callable(first)
    >> Step.parallel(
        "fan",
        {
            "fast": Step.from_callable(fast),
            "items": Step.from_callable(split) >> Step.map("each", Step.from_callable(work)),
        },
    )
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
            # "fast" and items 0, 2 are committed, item 1 is running: kill the worker mid-step,
            # mid-map, mid-parallel.
            await wait_for_calls(project.root, "fast", "work:x0", "work:x1", "work:x2")
            await wait_for_committed(runner, run_id, "fan/fast/fast", "fan/items/each[0]/work")
            await wait_for_committed(runner, run_id, "fan/items/each[2]/work")
            os.killpg(first_worker.pid, signal.SIGKILL)
            first_worker.wait(10)
            (project.root / "killed").touch()
            second_worker = start_worker(project.root)
            result = await engine.wait(runner, run_id)
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert result.output == "fast:x+done:x0,slow:x1,done:x2"
        # The killed step ran again (it never finished); nothing that finished did.
        assert calls(project.root) == {
            "first": 1,
            "fast": 1,
            "split": 1,
            "work:x0": 1,
            "work:x1": 2,
            "work:x2": 1,
            "last": 1,
        }
    finally:
        stop(first_worker)
        if second_worker is not None:
            stop(second_worker)
