"""Ctrl-C and SIGTERM stop a run cleanly: the real CLI in a subprocess, on SQLite and PostgreSQL.

The first signal stops before the next step (a sync step finishes first, an async one is
cancelled), stores the run ``interrupted`` with its lease released, prints one line with the
resume command and exits 130/143; a second one exits at once, the state still resumable.
Every wait is on a file a step writes (or on the process's exit), never a guessed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo.testing.cli import run_flujo, wait_for_file

PIPELINE = """
import asyncio, os, pathlib, time
from flujo import PipelineContext, Step, stop_requested

HERE = pathlib.Path(__file__).parent
WAIT = os.environ.get("WAIT", "")  # the step that waits for the stop request

def mark(name):
    with open(HERE / name, "a") as fh:
        fh.write("x\\n")

def wait_for_stop(step):
    mark(step + ".started")
    while not stop_requested():
        time.sleep(0.01)
    mark(step + ".saw_stop")
    if os.environ.get("STUBBORN") == "1":  # ignores the stop: only a second signal ends it
        while True:
            time.sleep(0.05)

def a(x: str, context: PipelineContext) -> str:
    (HERE / "run_id").write_text(context.run_id)
    mark("a.calls")
    return x + "-a"

def sync_b(x: str) -> str:
    mark("b.calls")
    if WAIT == "b":
        wait_for_stop("b")
    return x + "-b"

async def async_b(x: str) -> str:
    mark("b.calls")
    if WAIT == "b":
        mark("b.started")
        await asyncio.sleep(3600)
    return x + "-b"

def c(x: str) -> str:
    mark("c.calls")
    if WAIT == "c":
        wait_for_stop("c")
    return x + "-c"

sync_pipeline = (
    Step.from_callable(a) >> Step.from_callable(sync_b, name="b") >> Step.from_callable(c)
)
async_pipeline = (
    Step.from_callable(a) >> Step.from_callable(async_b, name="b") >> Step.from_callable(c)
)
"""

NOISE = ("Traceback", "never awaited", "Task was destroyed", "Exception ignored", "Aborted")


@pytest.fixture
def site(tmp_path: Path, state_uri: str) -> dict[str, str]:
    """A folder with the pipeline, and the environment every process of a test uses."""
    (tmp_path / "pipe.py").write_text(PIPELINE)
    return {"FLUJO_LOAD_PLUGINS": "", "FLUJO__STATE__URI": state_uri}


def _start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    return subprocess.Popen(
        # --quiet: these tests read the lines about the interruption, not step progress.
        [sys.executable, "-m", "flujo", *args, "--quiet"],
        cwd=tmp_path,
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the child did not exit: {proc.communicate()}") from None
    return proc.returncode, out, err


def _one_clean_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert not any(n in stderr for n in NOISE), stderr
    return lines[0]


def _show(tmp_path: Path, env: dict[str, str], run_id: str) -> dict[str, Any]:
    shown = run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    row: dict[str, Any] = json.loads(shown.stdout)
    return row


def _calls(tmp_path: Path, step: str) -> int:
    path = tmp_path / f"{step}.calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _resumes_at_once(tmp_path: Path, env: dict[str, str], run_id: str) -> None:
    resumed = run_flujo("runs", "resume", run_id, "--json", "-q", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "succeeded"
    assert result["output"] == "in-a-b-c"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_sync_step_finishes_then_the_run_stops_resumable(
    sig: signal.Signals, tmp_path: Path, site: dict[str, str]
) -> None:
    env = {**site, "WAIT": "b"}
    proc = _start(tmp_path, env, "run", "pipe.py:sync_pipeline", "--input", "in")
    wait_for_file(tmp_path / "b.started", proc)
    proc.send_signal(sig)
    code, out, err = _finish(proc)
    run_id = (tmp_path / "run_id").read_text()

    assert code == 128 + sig
    assert out == ""
    assert _one_clean_line(err) == (
        f"run {run_id} interrupted by {sig.name} before step 'c' (3 of 3); "
        f"resume with: flujo runs resume {run_id}"
    )
    row = _show(tmp_path, site, run_id)
    assert row["status"] == "interrupted"
    assert row["current_step"] == 2  # b finished and was committed
    assert [(s["name"], s["status"]) for s in row["steps"]] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
    ]
    assert _calls(tmp_path, "c") == 0

    _resumes_at_once(tmp_path, site, run_id)
    assert (_calls(tmp_path, "a"), _calls(tmp_path, "b"), _calls(tmp_path, "c")) == (1, 1, 1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_async_step_is_cancelled_and_runs_again_on_resume(
    sig: signal.Signals, tmp_path: Path, site: dict[str, str]
) -> None:
    env = {**site, "WAIT": "b"}
    proc = _start(tmp_path, env, "run", "pipe.py:async_pipeline", "--input", "in", "--json")
    wait_for_file(tmp_path / "b.started", proc)
    proc.send_signal(sig)
    code, out, err = _finish(proc)
    run_id = (tmp_path / "run_id").read_text()

    assert code == 128 + sig
    assert _one_clean_line(err) == (
        f"run {run_id} interrupted by {sig.name} during step 'b' (2 of 3); "
        f"resume with: flujo runs resume {run_id}"
    )
    printed = json.loads(out)  # --json prints the run as stored
    assert printed["status"] == "interrupted"
    assert printed["output"] is None
    row = _show(tmp_path, site, run_id)
    assert row["status"] == "interrupted"
    assert row["error"] == printed["error"]
    assert row["current_step"] == 1
    assert [s["name"] for s in row["steps"]] == ["a"]

    _resumes_at_once(tmp_path, site, run_id)
    assert (_calls(tmp_path, "a"), _calls(tmp_path, "b"), _calls(tmp_path, "c")) == (1, 2, 1)


def test_a_run_that_finished_anyway_prints_its_output(tmp_path: Path, site: dict[str, str]) -> None:
    env = {**site, "WAIT": "c"}  # the signal comes during the last step, which finishes
    proc = _start(tmp_path, env, "run", "pipe.py:sync_pipeline", "--input", "in")
    wait_for_file(tmp_path / "c.started", proc)
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    run_id = (tmp_path / "run_id").read_text()
    assert code == 0, err
    assert out == "in-a-b-c\n"
    assert err == f"run {run_id}: succeeded\n"
    assert _show(tmp_path, site, run_id)["status"] == "succeeded"


def test_a_second_signal_exits_at_once_and_the_run_stays_resumable(
    tmp_path: Path, site: dict[str, str]
) -> None:
    env = {**site, "WAIT": "b", "STUBBORN": "1"}  # b never returns
    proc = _start(tmp_path, env, "run", "pipe.py:sync_pipeline", "--input", "in")
    wait_for_file(tmp_path / "b.started", proc)
    proc.send_signal(signal.SIGINT)
    wait_for_file(tmp_path / "b.saw_stop", proc)  # the first signal was handled
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    run_id = (tmp_path / "run_id").read_text()

    assert code == 130
    assert out == ""
    line = _one_clean_line(err)
    assert line.startswith(f"run {run_id} interrupted by a second SIGINT: stopped at once")
    assert line.endswith(f"; resume with: flujo runs resume {run_id}")
    row = _show(tmp_path, site, run_id)
    assert row["status"] == "interrupted"
    assert row["current_step"] == 1

    _resumes_at_once(tmp_path, site, run_id)  # b was not committed: it runs again
    assert (_calls(tmp_path, "a"), _calls(tmp_path, "b"), _calls(tmp_path, "c")) == (1, 2, 1)


def test_a_stale_worker_stops_on_sigterm_and_loses_nothing(
    tmp_path: Path, site: dict[str, str]
) -> None:
    # Two runs left interrupted during b (async: cancelled), e.g. by an earlier pod.
    env = {**site, "WAIT": "b"}
    run_ids = []
    for _ in range(2):
        (tmp_path / "b.started").unlink(missing_ok=True)
        proc = _start(tmp_path, env, "run", "pipe.py:async_pipeline", "--input", "in")
        wait_for_file(tmp_path / "b.started", proc)
        proc.send_signal(signal.SIGINT)
        assert _finish(proc)[0] == 130
        run_ids.append((tmp_path / "run_id").read_text())

    # A worker claims one, and gets SIGTERM while its step b runs.
    (tmp_path / "b.started").unlink()
    worker = _start(tmp_path, env, "runs", "resume", "--stale")
    wait_for_file(tmp_path / "b.started", worker)
    worker.send_signal(signal.SIGTERM)
    code, out, err = _finish(worker)
    assert code == 143
    line = _one_clean_line(err)
    [taken] = [r for r in run_ids if f"run {r} interrupted by SIGTERM during step 'b'" in line]
    assert line.endswith(f"resume with: flujo runs resume {taken}")
    assert out == ""
    # Nothing is left claimed: both runs are interrupted, neither is leased or running.
    for run_id in run_ids:
        row = _show(tmp_path, site, run_id)
        assert row["status"] == "interrupted"
        assert row["current_step"] == 1
    assert _calls(tmp_path, "b") == 3  # the worker started b of one run only

    # The next worker finishes both.
    drained = run_flujo("runs", "resume", "--stale", "--json", "-q", cwd=tmp_path, env=site)
    assert drained.returncode == 0, drained.stderr
    results = json.loads(drained.stdout)
    assert sorted(r["run_id"] for r in results) == sorted(run_ids)
    assert {(r["status"], r["output"]) for r in results} == {("succeeded", "in-a-b-c")}
    assert (_calls(tmp_path, "a"), _calls(tmp_path, "c")) == (2, 2)


async def test_request_stop_from_python_stops_before_the_next_step(state_uri: str) -> None:
    from flujo import Flujo, FlujoConfig, RunStatus, Step, stop_requested
    from flujo.config import StateSettings

    seen: list[str] = []
    holder: list[Flujo[Any]] = []

    async def first(x: str) -> str:
        assert not stop_requested()
        holder[0].request_stop(signal.SIGTERM)
        seen.append("first")
        return x + "-1"

    def second(x: str) -> str:
        seen.append("second")
        return x + "-2"

    pipeline = Step.from_callable(first) >> Step.from_callable(second)
    config = FlujoConfig(state=StateSettings(uri=state_uri))
    async with Flujo(pipeline, config=config) as runner:
        holder.append(runner)
        result = await runner.run_async("in")
        assert result.status is RunStatus.INTERRUPTED
        assert result.error == "interrupted by SIGTERM before step 'second' (2 of 2)"
        assert seen == ["first"]  # first was async but had returned: committed, not cancelled
        stored = await runner.runtime.state.get_run(result.run_id)
        assert stored is not None
        assert stored.status is RunStatus.INTERRUPTED
        assert stored.current_step == 1
        assert stored.error == result.error
        assert await runner.resume_stale_async() == []  # a stopping runner claims nothing
    async with Flujo(pipeline, config=config) as other:
        [resumed] = await other.resume_stale_async()  # interrupted runs are picked up
    assert resumed.run_id == result.run_id
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.output == "in-1-2"
    assert seen == ["first", "second"]
