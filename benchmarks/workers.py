"""Runs per second with many worker processes sharing one state database.

A 10-step no-op pipeline; each worker process runs it back to back for a fixed time, after a
warm-up and a common start signal. Printed in one table: PostgreSQL with 1, 4 and 8 workers
(when a server is given) and SQLite with 1 worker, measured in the same run.

    python benchmarks/workers.py [--dsn postgresql://...] [--seconds 3]

The DSN defaults to FLUJO_TEST_POSTGRES_DSN (what .ci/run exports); the benchmark works in a
fresh schema it drops afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

STEPS = 10


async def _noop(x: int) -> int:
    return x


def _worker(uri: str, seconds: float, go: Path, ready: Path) -> None:
    from flujo import Flujo, FlujoConfig, Pipeline, Step
    from flujo.config import StateSettings
    from flujo.plugins.manager import PluginManager

    pipeline = Pipeline([Step.from_callable(_noop, name=f"s{i}") for i in range(STEPS)])
    config = FlujoConfig(state=StateSettings(uri=uri, pool_size=2), plugin_manager=PluginManager())

    async def main() -> int:
        async with Flujo(pipeline, config=config) as runner:
            for _ in range(5):
                await runner.run_async(0)
            ready.touch()
            while not go.exists():
                await asyncio.sleep(0.005)
            done, deadline = 0, time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await runner.run_async(0)
                done += 1
            return done

    print(asyncio.run(main()))


def _measure(uri: str, workers: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    uri,
                    str(seconds),
                    str(go),
                    str(Path(tmp) / f"ready{i}"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(workers)
        ]
        while len(list(Path(tmp).glob("ready*"))) < workers:
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit("a worker failed to start")
            time.sleep(0.01)
        go.touch()
        total = sum(int(p.communicate()[0].strip()) for p in procs)
    return total / seconds


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("FLUJO_TEST_POSTGRES_DSN"))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("sqlite", 1, _measure(f"sqlite:///{tmp}/bench.db", 1, args.seconds)))
    if args.dsn:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        uri = f"{args.dsn}{'&' if '?' in args.dsn else '?'}options=-csearch_path%3D{schema}"
        try:
            for workers in (1, 4, 8):
                rows.append(("postgresql", workers, _measure(uri, workers, args.seconds)))
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(
        f"workers: {STEPS}-step no-op pipeline, {args.seconds:g} s per measurement, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  {'backend':<12}{'workers':>8}{'runs/s':>10}{'steps/s':>10}")
    for backend, workers, rate in rows:
        print(f"  {backend:<12}{workers:>8}{rate:>10.0f}{rate * STEPS:>10.0f}")
    if not args.dsn:
        print("  (no PostgreSQL: pass --dsn or set FLUJO_TEST_POSTGRES_DSN)")


if __name__ == "__main__":
    main()
