"""Exactly-once commits under contention: leases kept alive through blocking steps, fencing of
a worker that lost its lease, and resumes racing each other. Real SQLite and PostgreSQL, real
processes; commits are counted by database triggers (``commit_ledger``), not by executions."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, RunStatus, Step, Usage
from flujo.config import StateSettings
from flujo.domain.errors import RunFinishedError, RunLeasedError
from flujo.domain.interfaces import StateBackend
from flujo.domain.models import RunRecord
from flujo.plugins.manager import PluginManager
from flujo.state import open_backend
from flujo.state.postgres import PostgresBackend
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import wait_for_file


async def _open(uri: str, root: Path) -> StateBackend:
    state = open_backend(StateSettings(uri=uri), root)
    await state.open()
    return state


async def _ledger(ledger: Any, uri: str, root: Path, read: str) -> Any:
    state = await _open(uri, root)
    try:
        return await getattr(ledger, read)(state)
    finally:
        await state.close()


def _env(tmp_path: Path, uri: str, lease_s: float) -> dict[str, str]:
    (tmp_path / "flujo.toml").write_text(f'[state]\nuri = "{uri}"\nlease_s = {lease_s}\n')
    log = tmp_path / "log"
    log.mkdir()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLUJO")},
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


async def _until_expired(uri: str, root: Path) -> None:
    state = await _open(uri, root)
    try:
        rows = await state.fetch_all(
            "SELECT MAX(lease_expires_at) AS last FROM workflow_state WHERE status = 'running'"
        )
    finally:
        await state.close()
    # Leases are wall-clock by nature (on PostgreSQL the server's clock, same host).
    await asyncio.sleep(max(0.0, float(rows[0]["last"]) - time.time()) + 0.05)


# --------------------------------------------------------------------------- blocking steps

BLOCKING = """
import os, pathlib, time
from flujo import Pipeline, Step

LOG = pathlib.Path(os.environ["FLUJO_TEST_LOG"])
STEP_S = float(os.environ["STEP_S"])

def _log(step, x):
    with open(LOG / f"{os.getpid()}.log", "a") as fh:
        fh.write(f"{step} {x}\\n")

def _burn() -> None:
    # CPU-bound and sync: holds the event loop (and all but a slice of the GIL) throughout.
    end = time.monotonic() + STEP_S
    n = 0
    while time.monotonic() < end:
        n += 1

def spin(x: str) -> str:
    _log("spin", x)
    _burn()
    return x

def nap(x: str) -> str:
    _log("nap", x)
    time.sleep(STEP_S)
    return x

def spin_again(x: str) -> str:
    _log("spin_again", x)
    _burn()
    return x + "!"

pipeline = Pipeline([Step.from_callable(spin), Step.from_callable(nap),
                     Step.from_callable(spin_again)], name="blocking")
"""

BLOCKING_WORKER = """
import asyncio, json, sys
from flujo import Flujo
from blocking import pipeline

async def main() -> None:
    async with Flujo(pipeline) as runner:
        results = await asyncio.gather(*(runner.run_async(f"run{i}") for i in range(2)))
    print(json.dumps([r.status.value for r in results]))

asyncio.run(main())
"""

# Polls for stale runs through the Python API, as a worker draining runs would.
API_POLLER = """
import asyncio, pathlib, sys
from flujo import Flujo
from blocking import pipeline

async def main(stop: pathlib.Path) -> None:
    async with Flujo(pipeline) as runner:
        while not stop.exists():
            for result in await runner.resume_stale_async():
                print("resumed", result.run_id, flush=True)
            await asyncio.sleep(0.05)

asyncio.run(main(pathlib.Path(sys.argv[1])))
"""

# Polls with the CLI, as cron would: a fresh `flujo runs resume --stale` each time.
CLI_POLLER = """
import pathlib, subprocess, sys
stop = pathlib.Path(sys.argv[1])
while not stop.exists():
    done = subprocess.run([sys.executable, "-m", "flujo", "runs", "resume", "--stale", "--json"],
                          capture_output=True, text=True, timeout=120)
    if done.stdout.strip() not in ("", "[]") or done.returncode != 0:
        print("resumed", done.returncode, done.stdout, done.stderr, flush=True)
"""


def test_blocking_sync_steps_longer_than_the_lease_run_and_commit_once(
    state_uri: str, tmp_path: Path, commit_ledger: Any
) -> None:
    """Sync steps (CPU-bound and sleeping) each outlast the lease while other processes poll
    ``resume --stale`` the whole time: the worker's lease stays alive, no run is stolen, and
    every step executes, and commits, exactly once."""
    # Renewals come every lease_s / 3: a 2 s lease leaves 1.3 s of slack for a renewal delayed
    # by a loaded machine (with 1 s, two engineers' test runs at once starved it and the lease
    # really expired), and each step still outlasts the lease.
    lease_s, step_s = 2.0, 2.5
    env = {**_env(tmp_path, state_uri, lease_s), "STEP_S": str(step_s)}
    (tmp_path / "blocking.py").write_text(BLOCKING)
    (tmp_path / "worker.py").write_text(BLOCKING_WORKER)
    (tmp_path / "api_poller.py").write_text(API_POLLER)
    (tmp_path / "cli_poller.py").write_text(CLI_POLLER)
    asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "install"))
    stop = tmp_path / "stop"

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    pollers = [start("api_poller.py", str(stop)), start("cli_poller.py", str(stop))]
    try:
        worker = start("worker.py")
        out, err = worker.communicate(timeout=300)
    finally:
        stop.touch()
        polled = [p.communicate(timeout=120) for p in pollers]
    assert worker.returncode == 0, err
    assert json.loads(out) == ["succeeded", "succeeded"]
    for (poller_out, poller_err), proc in zip(polled, pollers, strict=True):
        assert proc.returncode == 0, poller_err
        assert poller_out == "", poller_out  # no poller found anything to take over
    executed = _executions(tmp_path)
    assert executed == Counter(
        {(step, f"run{i}"): 1 for i in range(2) for step in ("spin", "nap", "spin_again")}
    )
    steps = asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "steps"))
    assert set(steps.values()) == {1}
    assert len(steps) == 6
    finals = asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "finals"))
    assert set(finals.values()) == {1}
    assert {status for _, status in finals} == {"succeeded"}


# --------------------------------------------------------------------------- a paused worker

PAUSABLE = """
import os, pathlib, time
from flujo import PipelineContext, Step

HERE = pathlib.Path(__file__).parent
LOG = pathlib.Path(os.environ["FLUJO_TEST_LOG"])

def _log(step, x):
    with open(LOG / f"{os.getpid()}.log", "a") as fh:
        fh.write(f"{step} {x}\\n")

def one(x: str, context: PipelineContext) -> str:
    _log("one", x)
    (HERE / "run_id").write_text(context.run_id)
    return x + "-1"

def two(x: str) -> str:
    _log("two", x)
    if os.environ.get("PAUSE") == "1":
        (HERE / "two.started").touch()
        while not (HERE / "go").exists():  # held here while the test stops the process
            time.sleep(0.02)
    return x + "-2"

def three(x: str) -> str:
    _log("three", x)
    return x + "-3"

pipeline = Step.from_callable(one) >> Step.from_callable(two) >> Step.from_callable(three)
"""


def test_a_paused_worker_past_its_lease_cannot_commit(
    state_uri: str, tmp_path: Path, commit_ledger: Any
) -> None:
    """A worker stopped (SIGSTOP: its heartbeat too) mid-step past its lease; another process
    claims the run and finishes it; the first one, continued, has its commit refused."""
    env = _env(tmp_path, state_uri, lease_s=0.5)
    (tmp_path / "pausable.py").write_text(PAUSABLE)
    asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "install"))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flujo",
            "run",
            "pausable:pipeline",
            "--input",
            "in",
            "--json",
            "-q",
        ],
        cwd=tmp_path,
        env={**env, "PAUSE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(tmp_path / "two.started", worker)
        worker.send_signal(signal.SIGSTOP)
        asyncio.run(_until_expired(state_uri, tmp_path))
        rescue = subprocess.run(
            [sys.executable, "-m", "flujo", "runs", "resume", "--stale", "--json", "-q"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rescue.returncode == 0, rescue.stderr
        [rescued] = json.loads(rescue.stdout)
        assert rescued["status"] == "succeeded"
        assert rescued["output"] == "in-1-2-3"
        (tmp_path / "go").touch()
    finally:
        worker.send_signal(signal.SIGCONT)
        out, err = worker.communicate(timeout=120)
    run_id = (tmp_path / "run_id").read_text()
    assert worker.returncode == 1, (out, err)
    assert out == ""  # it reports no result: the run is not its own any more
    *before, last = err.strip().splitlines()
    assert last == (
        f"error: run {run_id}: another worker took it over; this worker's commit was refused"
    )
    # The heartbeat, continued too, may notice first and say so.
    assert before in ([], [f"flujo: ERROR: run {run_id}: lease lost to another worker; stopping"])
    # Step two ran twice (at-least-once for a step interrupted mid-way) but committed once.
    assert _executions(tmp_path) == Counter(
        {("one", "in"): 1, ("two", "in-1"): 2, ("three", "in-1-2"): 1}
    )
    steps = asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "steps"))
    assert steps == Counter({(run_id, 0): 1, (run_id, 1): 1, (run_id, 2): 1})
    finals = asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "finals"))
    assert finals == Counter({(run_id, "succeeded"): 1})


# --------------------------------------------------------------------------- resume races

race_calls: list[tuple[str, str]] = []
_race_lock = threading.Lock()


def _race_one(x: str) -> str:
    with _race_lock:
        race_calls.append(("one", x))
    return x


def _race_two(x: str) -> str:
    with _race_lock:
        first = ("two", x) not in race_calls
        race_calls.append(("two", x))
    if first:
        raise ConnectionError("provider down")  # the run fails here once, to be resumed
    return x + "!"


race_pipeline = Pipeline([Step.from_callable(_race_one), Step.from_callable(_race_two)])


def _slow_reads(monkeypatch: pytest.MonkeyPatch, backend: type[Any]) -> None:
    """A pause after each read of a run: the window in which another worker may change it.

    Test-only; the real backend does all the work."""
    read = backend.get_run

    async def get_run(self: Any, run_id: str) -> RunRecord | None:
        run: RunRecord | None = await read(self, run_id)
        await asyncio.sleep(random.uniform(0, 0.005))
        return run

    monkeypatch.setattr(backend, "get_run", get_run)


def test_concurrent_resumes_of_one_run_commit_each_step_once(
    state_uri: str, tmp_path: Path, commit_ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers race to resume the same failed run, many times: whichever takes it
    finishes it while the others are still between reading the run and taking it. Exactly
    one takes it, the others are told it is leased or finished, and nothing is re-run or
    committed twice (reading the run and taking it must not be two separate decisions)."""
    race_calls.clear()
    rounds = 25
    config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=PluginManager())
    _slow_reads(monkeypatch, SQLiteBackend if state_uri.startswith("sqlite") else PostgresBackend)
    # Four runners, each with its own connection(s), as four workers would have.
    runners = [Flujo(race_pipeline, config=config) for _ in range(4)]
    try:
        runners[0].run("warm-up")  # opens the first backend: tables exist
        asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "install"))
        outcomes: list[list[str]] = []
        run_ids: list[str] = []
        for i in range(rounds):
            failed = runners[0].run(f"r{i}")
            assert failed.status is RunStatus.FAILED
            run_ids.append(failed.run_id)
            barrier = threading.Barrier(3)
            seen: list[str] = []

            def resume(
                runner: Flujo[Any],
                run_id: str = failed.run_id,
                barrier: threading.Barrier = barrier,
                seen: list[str] = seen,
            ) -> None:
                barrier.wait(timeout=30)
                try:
                    result = runner.resume(run_id)
                except (RunLeasedError, RunFinishedError) as exc:
                    seen.append(type(exc).__name__)
                else:
                    seen.append(result.status.value)

            threads = [threading.Thread(target=resume, args=(r,)) for r in runners[1:]]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads)
            outcomes.append(sorted(seen))
    finally:
        for runner in runners:
            runner.close()
    for seen in outcomes:
        assert seen.count("succeeded") == 1, outcomes
        assert len(seen) == 3
        assert set(seen) <= {"succeeded", "RunLeasedError", "RunFinishedError"}
    # Each run: one, the failed two, the resumed two; nothing more.
    expected = Counter({("one", "warm-up"): 1, ("two", "warm-up"): 1})
    for i in range(rounds):
        expected.update({("one", f"r{i}"): 1, ("two", f"r{i}"): 2})
    assert Counter(race_calls) == expected
    steps = asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "steps"))
    assert steps == Counter({(r, 0): 1 for r in run_ids} | {(r, 1): 2 for r in run_ids})
    finals = asyncio.run(_ledger(commit_ledger, state_uri, tmp_path, "finals"))
    assert finals == Counter(
        {(r, "failed"): 1 for r in run_ids} | {(r, "succeeded"): 1 for r in run_ids}
    )


# --------------------------------------------------------------------------- draining

_thief_uri: list[str] = []


async def _stolen_mid_step(x: str, context: PipelineContext) -> str:
    if x == "steal":
        # Another worker takes the run while this step runs (as after this worker stalled).
        thief = await _open(_thief_uri[0], Path("."))
        try:
            await thief.execute(
                "UPDATE workflow_state SET lease_owner = 'thief', lease_epoch = version + 1, "
                "version = version + 1 WHERE run_id = :r",
                {"r": context.run_id},
            )
        finally:
            await thief.close()
    return x + "!"


drained = Pipeline([Step.from_callable(_stolen_mid_step)])


async def test_a_drain_goes_on_past_a_run_taken_from_it(state_uri: str, tmp_path: Path) -> None:
    """``resume_stale_async`` (a worker draining abandoned runs): a run taken from it mid-step
    is the new owner's; its commit is refused, and the drain goes on to the next run."""
    _thief_uri[:] = [state_uri]
    setup = await _open(state_uri, tmp_path)
    try:
        for name, x in (("a", "steal"), ("b", "keep")):
            now = time.time()
            record = RunRecord(
                name, "drained", drained.version, None, RunStatus.RUNNING, x, None, None,
                {"run_id": name}, Usage(), 0, now, now,
            )  # fmt: skip
            await setup.create_run(record, owner="dead", lease_s=0.05)
            await asyncio.sleep(0.01)  # claimed in this order: oldest lease first
        await _until_expired(state_uri, tmp_path)
        config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=PluginManager())
        async with Flujo(drained, config=config) as runner:
            results = await runner.resume_stale_async()
        assert [(r.run_id, r.output) for r in results] == [("b", "keep!")]
        stolen = await setup.get_run("a")
        assert stolen is not None
        assert stolen.status is RunStatus.RUNNING
        assert stolen.steps == []
    finally:
        await setup.close()
