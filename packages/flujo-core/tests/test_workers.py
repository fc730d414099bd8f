"""Many worker processes sharing one state database; stale-run recovery after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from flujo.config import StateSettings
from flujo.state import open_backend
from flujo.testing.cli import run_flujo as run_cli

PIPELINE = """
import asyncio, os, pathlib
from flujo import Pipeline, Step

LOG = pathlib.Path(os.environ["FLUJO_TEST_LOG"])

def _log(step, x):
    with open(LOG / f"{os.getpid()}.log", "a") as fh:
        fh.write(f"{step} {x}\\n")

async def one(x: str) -> str:
    _log("one", x)
    return x

async def two(x: str) -> str:
    if os.environ.get("HANG") == "1":
        (LOG / f"hang-{x}").touch()
        await asyncio.Event().wait()
    _log("two", x)
    return x

async def three(x: str) -> str:
    _log("three", x)
    return x + "!"

pipeline = Pipeline([Step.from_callable(one), Step.from_callable(two),
                     Step.from_callable(three)], name="workers")
"""

WORKER = """
import asyncio, sys
from flujo import Flujo
from pipe import pipeline

async def main(tag: str, runs: int, concurrent: int) -> None:
    async with Flujo(pipeline) as runner:
        for start in range(0, runs, concurrent):
            batch = range(start, min(runs, start + concurrent))
            results = await asyncio.gather(*(runner.run_async(f"{tag}-{i}") for i in batch))
            assert all(r.succeeded for r in results), results

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def _project(tmp_path: Path, uri: str, lease_s: float) -> dict[str, str]:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "flujo.toml").write_text(f'[state]\nuri = "{uri}"\nlease_s = {lease_s}\n')
    log = tmp_path / "log"
    log.mkdir()
    return {
        **os.environ,
        "FLUJO_LOAD_PLUGINS": "",
        "FLUJO_TEST_LOG": str(log),
        "FLUJO_CONFIG": str(tmp_path / "flujo.toml"),
        "PYTHONPATH": str(tmp_path),
    }


def _executions(tmp_path: Path) -> Counter[tuple[str, str]]:
    lines = [
        line.split()
        for f in (tmp_path / "log").glob("*.log")
        for line in f.read_text().splitlines()
    ]
    return Counter((step, x) for step, x in lines)


def _runs(tmp_path: Path, env: dict[str, str]) -> list[dict[str, object]]:
    listed = run_cli("runs", "list", "--limit", "100000", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    runs: list[dict[str, object]] = json.loads(listed.stdout)
    return runs


async def _until_leases_expire(uri: str, root: Path) -> None:
    state = open_backend(StateSettings(uri=uri), root)
    await state.open()
    try:
        rows = await state.fetch_all(
            "SELECT MAX(lease_expires_at) AS last FROM workflow_state WHERE status = 'running'"
        )
    finally:
        await state.close()
    # Leases are wall-clock by nature; on PostgreSQL they use the server's clock (same host).
    await asyncio.sleep(max(0.0, float(rows[0]["last"]) - time.time()) + 0.05)


def test_many_workers_lose_and_duplicate_nothing(state_uri: str, tmp_path: Path) -> None:
    workers, per_worker = (8, 250) if state_uri.startswith("postgresql") else (4, 100)
    env = _project(tmp_path, state_uri, lease_s=30)
    procs = [
        subprocess.Popen(
            [sys.executable, "worker.py", f"w{w}", str(per_worker), "5"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    runs = _runs(tmp_path, env)
    assert len(runs) == workers * per_worker
    assert {r["status"] for r in runs} == {"succeeded"}
    expected = {f"w{w}-{i}" for w in range(workers) for i in range(per_worker)}
    assert {str(r["output"])[:-1] for r in runs} == expected
    executed = _executions(tmp_path)
    assert set(executed.values()) == {1}  # every step of every run ran exactly once
    assert len(executed) == 3 * workers * per_worker


def test_stale_runs_of_a_killed_worker_are_finished_exactly_once(
    state_uri: str, tmp_path: Path
) -> None:
    env = _project(tmp_path, state_uri, lease_s=0.5)
    doomed = subprocess.Popen(
        [sys.executable, "worker.py", "doomed", "6", "6"],
        cwd=tmp_path,
        env={**env, "HANG": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "log").glob("hang-*"))) < 6:
        assert doomed.poll() is None, doomed.communicate()
        assert time.monotonic() < deadline, "the worker never reached its second steps"
        time.sleep(0.02)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)

    # Until the dead worker's leases expire nothing is stale: wait for exactly that.
    asyncio.run(_until_leases_expire(state_uri, tmp_path))
    recoverers = [
        subprocess.Popen(
            [sys.executable, "-m", "flujo", "runs", "resume", "--stale", "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    resumed: list[str] = []
    for proc in recoverers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        resumed += [r["run_id"] for r in json.loads(out)]
    runs = _runs(tmp_path, env)
    assert sorted(resumed) == sorted(str(r["run_id"]) for r in runs)  # each exactly once
    assert len(runs) == 6
    assert {r["status"] for r in runs} == {"succeeded"}
    executed = _executions(tmp_path)
    assert set(executed.values()) == {1}  # step one was not re-run; two and three ran once
    assert sorted(executed) == sorted(
        (step, f"doomed-{i}") for i in range(6) for step in ("one", "two", "three")
    )
