"""N worker processes x M runs: every run completes, none is lost, no step runs twice.

The issue's size, 4 workers x 200 runs of a 2-step pipeline, took 31 s here (a shared 2-core
machine under load, a dev server with its database in memory). ``FLUJO_TEMPORAL_LOAD_RUNS``
changes the number of runs.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from temporal_testkit import Project, start_worker, stop

from flujo import Flujo
from flujo.domain.models import RunStatus
from flujo.plugin import load_target

WORKERS = 4
RUNS = int(os.environ.get("FLUJO_TEMPORAL_LOAD_RUNS", "200"))

PIPE = """
import os
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def _note(line: str) -> None:
    # One write per line (O_APPEND): lines from many processes never interleave.
    fd = os.open(HERE / "calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


def first(n: int) -> int:
    _note(f"first:{n}")
    return n * 2


def second(n: int) -> int:
    _note(f"second:{n}")
    return n + 1


pipeline = Step.from_callable(first) >> Step.from_callable(second)
"""


async def test_workers_times_runs_none_lost_or_duplicated(project: Project) -> None:
    ref = project.write("pipe.py", PIPE) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    workers = [start_worker(project.root) for _ in range(WORKERS)]
    try:
        async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
            run_ids = [await engine.submit(runner, n) for n in range(RUNS)]
            results = await asyncio.gather(*(engine.wait(runner, r) for r in run_ids))
            stored = await runner.runtime.state.list_runs(limit=RUNS * 2)
    finally:
        for proc in workers:
            stop(proc)
    assert [r.status for r in results] == [RunStatus.SUCCEEDED] * RUNS
    assert [r.output for r in results] == [n * 2 + 1 for n in range(RUNS)]
    assert len(stored) == RUNS
    lines = Counter((project.root / "calls.log").read_text().split())
    expected = {f"first:{n}": 1 for n in range(RUNS)} | {f"second:{n * 2}": 1 for n in range(RUNS)}
    assert lines == expected
