"""Per-inner-step overhead of fan-out (parallel) and map steps, beside the sequential per-step
figure measured in the same run.

- sequential: a pipeline of N no-op async steps (as ``step_overhead.py``);
- parallel: one parallel step of 100 no-op branches;
- map: one map step over 1,000 items (concurrency 1,000) with a no-op body.

Every inner step is committed (its row, holding its scope's context: a branch's or an
item's) under the run's lease before anything after it runs, as a top-level step is; the inner
steps that finish in the same event-loop turn (here: every branch, every item, at once) commit
together, one transaction and one fenced update of the run row for the lot
(``flujo.application.inner_commits``). SQLite state in WAL mode. The three figures are
measured one after another in the same process, and compared as ratios to the sequential one.
Target (issue #18): within 2x of the sequential figure. LangGraph's ``Send`` fan-out is
printed beside it when ``langgraph`` is installed.

    python benchmarks/control_flow.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from langgraph_send import us_per_send

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.state.sqlite import SQLiteBackend


async def _noop(x: Any) -> Any:
    return x


def _items(x: int) -> list[int]:
    return list(range(1000))


async def _us_per_inner(folder: Path, pipeline: Pipeline, inner: int, runs: int) -> float:
    runner: Flujo = Flujo(pipeline, config=FlujoConfig(), state=SQLiteBackend(folder / "f.db"))
    async with runner:
        await runner.run_async(0)  # warm-up
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = await runner.run_async(0)
            samples.append((time.perf_counter() - t0) / inner * 1e6)
            assert result.succeeded, result.error
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    steps = 50
    sequential = Pipeline([Step.from_callable(_noop, name=f"s{i}") for i in range(steps)])
    fan = Pipeline(
        [
            Step.parallel(
                "fan", {f"b{i}": Step.from_callable(_noop, name=f"n{i}") for i in range(100)}
            )
        ]
    )
    mapped = Step.from_callable(_items, name="items") >> Step.map(
        "each", Step.from_callable(_noop, name="work"), concurrency=1000
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seq = asyncio.run(_us_per_inner(folder, sequential, steps, args.runs * 4))
        par = asyncio.run(_us_per_inner(folder, fan, 100, args.runs))
        each = asyncio.run(_us_per_inner(folder, mapped, 1000, args.runs))
    lang = us_per_send(100, args.runs)
    print("control-flow overhead, SQLite WAL state, no-op steps (median of runs)")
    print(f"  sequential, {steps} steps             : {seq:8.1f} us/step")
    print(f"  parallel, 100 branches            : {par:8.1f} us/inner step ({par / seq:.2f}x)")
    print(f"  map, 1,000 items                  : {each:8.1f} us/inner step ({each / seq:.2f}x)")
    if lang is None:
        print("  langgraph Send fan-out            :      n/a (langgraph is not installed)")
    else:
        print(f"  langgraph Send fan-out, 100       : {lang:8.1f} us/send (in memory, not durable)")
    print("  target: parallel and map within 2x of sequential")


if __name__ == "__main__":
    main()
