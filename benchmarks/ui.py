"""flujo-ui with a big state database: 100,000 runs, and one run of 1,000 steps.

Times, through the real server (uvicorn on a loopback port, httpx as the browser), the first
page of the runs list (with its counts by status), the same page filtered (status, pipeline,
id prefix, a time range), a page deep in the list (keyset), a run of 1,000 steps, and the
pipelines page; beside a baseline measured in the same run: the same requests over a
database of 100 runs and a run of 10 steps (the per-request cost of the app itself).
Targets (issue #21): the first runs page ≤ 300 ms, the 1,000-step run ≤ 1 s, on SQLite and
PostgreSQL. Prints figures (median and max of --repeat requests) and the load average;
asserts nothing.

The 100,000 runs are copies of one real run (made by the runner) inserted by one SQL
statement, with spread creation times, 5 pipelines and mixed statuses, so seeding takes
seconds; the 1,000-step run is executed by the runner.

    python benchmarks/ui.py [--runs 100000] [--repeat 15] [--dsn postgresql://...]

The DSN defaults to FLUJO_TEST_POSTGRES_DSN; PostgreSQL rows are measured in a throwaway
schema, dropped at the end, after ``VACUUM ANALYZE`` (what autovacuum does soon after a bulk
insert). SQLite after ``ANALYZE``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flujo import Flujo, FlujoConfig, Step
from flujo.config import StateSettings
from flujo.plugin import StateBackend, open_state
from flujo.plugins.manager import PluginManager

NEXT = re.compile(r'href="/runs\?([^"]+)" rel="next"')
COLUMNS = (
    "run_id, pipeline_name, pipeline_version, pipeline_ref, status, current_step, input, "
    "context, last_output, output, error, usage, created_at, updated_at, lease_epoch, version"
)
SQLITE_SEED = f"""
INSERT INTO workflow_state ({COLUMNS})
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
SELECT lower(hex(randomblob(16))), 'pipe_' || (i % 5), t.pipeline_version, t.pipeline_ref,
  CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 101 = 0 THEN 'paused' ELSE 'succeeded' END,
  t.current_step, t.input, t.context, t.last_output, t.output, t.error, t.usage,
  :now - i * :gap, :now - i * :gap + (i % 50) / 10.0, 0, 1
FROM n, (SELECT * FROM workflow_state WHERE run_id = :template) AS t
"""
POSTGRES_SEED = f"""
INSERT INTO workflow_state ({COLUMNS})
SELECT md5(random()::text || i::text), 'pipe_' || (i % 5), t.pipeline_version, t.pipeline_ref,
  CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 101 = 0 THEN 'paused' ELSE 'succeeded' END,
  t.current_step, t.input, t.context, t.last_output, t.output, t.error, t.usage,
  :now - i * :gap, :now - i * :gap + (i % 50) / 10.0, 0, 1
FROM generate_series(1, :count) AS i, (SELECT * FROM workflow_state WHERE run_id = :template) AS t
"""


def _config(uri: str) -> FlujoConfig:
    manager = PluginManager()
    from flujo_ui import plugin

    manager.register(plugin, "flujo-ui")
    return FlujoConfig(state=StateSettings(uri=uri), plugin_manager=manager)


def _echo(text: str) -> str:
    return text


def _steps(n: int) -> Any:
    pipeline = Step.from_callable(_echo, name="s0")
    for i in range(1, n):
        pipeline = pipeline >> Step.from_callable(_echo, name=f"s{i}")
    return pipeline


async def _seed(config: FlujoConfig, runs: int, steps: int) -> str:
    """``runs`` runs (copies of a real one) and a real run of ``steps`` steps; its id."""
    async with Flujo(_steps(steps), config=config) as runner:
        big = await runner.run_async("hello " * 20)
        template = await runner.run_async("a customer's message, about this long " * 3)
    state: StateBackend = await open_state(config)
    try:
        seed = POSTGRES_SEED if state.dialect == "postgresql" else SQLITE_SEED
        # Spread over 60 days: the pipelines page's 14-day window holds about a quarter.
        await state.execute(
            seed,
            {
                "count": runs - 2,
                "now": time.time() - 60,
                "gap": 60 * 86400 / runs,
                "template": template.run_id,
            },
        )
        if state.dialect != "postgresql":
            await state.execute("ANALYZE")
    finally:
        await state.close()
    if config.state.uri.startswith("postgresql"):
        # What autovacuum does soon after a bulk insert (its insert threshold): statistics,
        # and the visibility map that lets counts by status read the index alone.
        import psycopg

        with psycopg.connect(config.state.uri, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE workflow_state")
    return big.run_id


@contextmanager
def _serving(config: FlujoConfig) -> Iterator[str]:
    import uvicorn

    from flujo_ui.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    app = create_app(config, token="bench", port=port)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _time(client: httpx.Client, path: str, repeat: int) -> tuple[float, float]:
    client.get(path).raise_for_status()  # warm-up (and: it must answer)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(path).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def _measure(uri: str, runs: int, steps: int, repeat: int) -> dict[str, tuple[float, float]]:
    config = _config(uri)
    t0 = time.perf_counter()
    big = asyncio.run(_seed(config, runs, steps))
    seeded = time.perf_counter() - t0
    prefix = big[:6]
    pages: dict[str, str] = {
        "runs: first page": "/runs",
        "runs: status=failed": "/runs?status=failed",
        "runs: pipeline=pipe_3": "/runs?pipeline=pipe_3",
        "runs: id prefix (6)": f"/runs?run_id={prefix}",
        "runs: 7-day range": "/runs?since="
        + time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400)),
        "runs: table fragment (poll)": "/runs/table",
        "run page (its steps, sections)": f"/runs/{big}",
        "pipelines (14 days)": "/pipelines",
    }
    found: dict[str, tuple[float, float]] = {}
    with _serving(config) as base, httpx.Client(base_url=base, timeout=120) as client:
        # A page deep in the list: follow "older" ten times.
        deep = "/runs"
        for _ in range(10):
            following = NEXT.search(client.get(deep).text)
            if following is None:
                break
            deep = "/runs?" + following.group(1).replace("&amp;", "&")
        pages["runs: 11th page (keyset)"] = deep
        for label, path in pages.items():
            found[label] = _time(client, path, repeat)
    found["(seed seconds)"] = (seeded, seeded)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dsn", default=os.environ.get("FLUJO_TEST_POSTGRES_DSN"))
    args = parser.parse_args()
    print(f"flujo-ui: {args.runs:,} runs and a run of {args.steps:,} steps")
    print("baseline (same run): 100 runs and a run of 10 steps")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    folder = Path(tempfile.mkdtemp(prefix="flujo-ui-bench-"))
    names = ["sqlite", *(["postgresql"] if args.dsn else [])]
    for name in names:
        schemas: list[str] = []

        def uri(tag: str, name: str = name, schemas: list[str] = schemas) -> str:
            if name == "sqlite":
                return f"sqlite:///{folder / f'{tag}.db'}"
            import psycopg

            schema = f"bench_ui_{tag}_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            schemas.append(schema)
            sep = "&" if "?" in args.dsn else "?"
            return f"{args.dsn}{sep}options=-csearch_path%3D{schema}"

        try:
            base = _measure(uri("base"), 100, 10, args.repeat)
            big = _measure(uri("big"), args.runs, args.steps, args.repeat)
        finally:
            if schemas:
                import psycopg

                with psycopg.connect(args.dsn, autocommit=True) as conn:
                    for schema in schemas:
                        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        print(f"\n{name}: seeded {args.runs:,} runs in {big['(seed seconds)'][0]:.1f} s")
        print(f"  {'request':34} {'baseline ms (median/max)':>26} {'big ms (median/max)':>22}")
        for label, (median, worst) in big.items():
            if label.startswith("("):
                continue
            b = base.get(label)
            b_text = f"{b[0]:8.1f} / {b[1]:8.1f}" if b else "-"
            print(f"  {label:34} {b_text:>26} {median:10.1f} / {worst:8.1f}")
    if not args.dsn:
        print("\n(no PostgreSQL: pass --dsn or set FLUJO_TEST_POSTGRES_DSN)")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("targets: first runs page <= 300 ms, a 1,000-step run <= 1000 ms")


if __name__ == "__main__":
    main()
