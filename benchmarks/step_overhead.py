"""Per-step overhead of a durable Flujo pipeline, next to a floor measured in the same run.

Pipeline: N no-op async steps, SQLite state in WAL mode (the default backend and settings).
Floor: a bare asyncio loop awaiting N no-op coroutines and doing one SQLite WAL commit per step
(an INSERT and an UPDATE, as a durable runner must) on the same kind of file.
Target (issue #2): at most 100 µs per step and within 3x of the floor.

    python benchmarks/step_overhead.py [--steps 50] [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.state.sqlite import SQLiteBackend


async def _noop(x: int) -> int:
    return x


def _pipeline(n: int) -> Pipeline:
    return Pipeline([Step.from_callable(_noop, name=f"s{i}") for i in range(n)], name="bench")


async def _flujo_us_per_step(folder: Path, steps: int, runs: int) -> float:
    runner: Flujo = Flujo(
        _pipeline(steps), config=FlujoConfig(), state=SQLiteBackend(folder / "flujo.db")
    )
    async with runner:
        await runner.run_async(0)  # warm-up: opens the database, builds type adapters
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = await runner.run_async(0)
            samples.append((time.perf_counter() - t0) / steps * 1e6)
            assert result.succeeded
    return statistics.median(samples)


async def _floor_us_per_step(folder: Path, steps: int, runs: int) -> float:
    conn = sqlite3.connect(str(folder / "floor.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, step INTEGER)")
    conn.execute("CREATE TABLE steps (run INTEGER, idx INTEGER, output TEXT)")
    samples = []
    for run in range(runs):
        conn.execute("INSERT INTO runs VALUES (?, 0)", (run,))
        t0 = time.perf_counter()
        for i in range(steps):
            await _noop(i)
            conn.execute("BEGIN")
            conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (run, i, "0"))
            conn.execute("UPDATE runs SET step = ? WHERE id = ?", (i + 1, run))
            conn.execute("COMMIT")
        samples.append((time.perf_counter() - t0) / steps * 1e6)
    conn.close()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        floor = asyncio.run(_floor_us_per_step(folder, args.steps, args.runs))
        flujo = asyncio.run(_flujo_us_per_step(folder, args.steps, args.runs))
    print(f"step overhead: {args.steps} no-op steps x {args.runs} runs, SQLite WAL state")
    print(f"  floor (asyncio + one SQLite WAL commit per step): {floor:8.1f} us/step")
    print(f"  flujo (durable pipeline)                        : {flujo:8.1f} us/step")
    print(
        f"  ratio flujo / floor                             : {flujo / floor:8.2f}x "
        "(target <= 3x, <= 100 us/step)"
    )


if __name__ == "__main__":
    main()
