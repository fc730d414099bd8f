"""Per-step overhead of a durable Flujo pipeline, next to a floor measured in the same run.

Pipeline: N no-op async steps, SQLite state in WAL mode (the default backend and settings).
Floor: a bare asyncio loop awaiting N no-op coroutines and doing one SQLite WAL commit per step
(an INSERT and an UPDATE, as a durable runner must) on the same kind of file.
Target (issue #2): at most 100 µs per step and within 3x of the floor.

The two are measured alternately, one run of each per round (which goes first alternates too),
so a machine shared with other jobs slows both alike; the figures are medians over the rounds.
Wall-clock time is the measure; the process's CPU time is printed beside it, since on a loaded
machine a run is often descheduled mid-way (more often the longer it is).

    python benchmarks/step_overhead.py [--steps 50] [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.state.sqlite import SQLiteBackend


async def _noop(x: int) -> int:
    return x


def _pipeline(n: int) -> Pipeline:
    return Pipeline([Step.from_callable(_noop, name=f"s{i}") for i in range(n)], name="bench")


class _Floor:
    """The floor: per step, await a no-op and commit an INSERT and an UPDATE (WAL, NORMAL)."""

    def __init__(self, folder: Path) -> None:
        self.conn = sqlite3.connect(str(folder / "floor.db"), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, step INTEGER)")
        self.conn.execute("CREATE TABLE steps (run INTEGER, idx INTEGER, output TEXT)")
        self.runs = 0

    async def run(self, steps: int) -> None:
        conn, run = self.conn, self.runs
        self.runs += 1
        conn.execute("INSERT INTO runs VALUES (?, 0)", (run,))
        for i in range(steps):
            await _noop(i)
            conn.execute("BEGIN")
            conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (run, i, "0"))
            conn.execute("UPDATE runs SET step = ? WHERE id = ?", (i + 1, run))
            conn.execute("COMMIT")


async def _us_per_step(run: Callable[[], Awaitable[object]], steps: int) -> tuple[float, float]:
    """Wall-clock and CPU µs per step of one run."""
    t0, c0 = time.perf_counter(), time.process_time()
    await run()
    return (
        (time.perf_counter() - t0) / steps * 1e6,
        (time.process_time() - c0) / steps * 1e6,
    )


Figures = tuple[float, float]  # median wall-clock and CPU µs per step


async def _measure(folder: Path, steps: int, runs: int) -> tuple[Figures, Figures]:
    """Median µs per step of the floor and of flujo, over ``runs`` alternating rounds."""
    floor = _Floor(folder)
    runner: Flujo = Flujo(
        _pipeline(steps), config=FlujoConfig(), state=SQLiteBackend(folder / "flujo.db")
    )

    async def floor_run() -> None:
        await floor.run(steps)

    async def flujo_run() -> None:
        result = await runner.run_async(0)
        assert result.succeeded

    floor_us: list[tuple[float, float]] = []
    flujo_us: list[tuple[float, float]] = []
    try:
        async with runner:
            await flujo_run()  # warm-up: opens the database, builds type adapters
            await floor_run()
            for i in range(runs):
                pair = [(floor_run, floor_us), (flujo_run, flujo_us)]
                for run, samples in pair if i % 2 == 0 else reversed(pair):
                    samples.append(await _us_per_step(run, steps))
    finally:
        floor.conn.close()
    return _medians(floor_us), _medians(flujo_us)


def _medians(samples: list[tuple[float, float]]) -> Figures:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        (floor, floor_cpu), (flujo, flujo_cpu) = asyncio.run(
            _measure(Path(tmp), args.steps, args.runs)
        )
    print(
        f"step overhead: {args.steps} no-op steps x {args.runs} rounds, SQLite WAL state "
        f"(load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end)"
    )
    print(f"  floor (asyncio + one SQLite WAL commit per step): {floor:8.1f} us/step")
    print(f"  flujo (durable pipeline)                        : {flujo:8.1f} us/step")
    print(
        f"  ratio flujo / floor                             : {flujo / floor:8.2f}x "
        "(target <= 3x, <= 100 us/step)"
    )
    print(
        f"  CPU time per step: floor {floor_cpu:.1f} us, flujo {flujo_cpu:.1f} us, "
        f"ratio {flujo_cpu / floor_cpu:.2f}x"
    )


if __name__ == "__main__":
    main()
