"""Durable runs: resume after a failure and after the process is killed (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, ResumeError, RunNotFoundError, RunStatus, Step
from flujo.application.targets import load_target
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import run_flujo as run_cli
from flujo.testing.cli import wait_for_file

PIPELINE = """
import os, pathlib
from flujo import PipelineContext, Step

HERE = pathlib.Path(__file__).parent

class Ctx(PipelineContext):
    trail: list[str] = []

def first(x: str, context: Ctx) -> str:
    (HERE / "run_id").write_text(context.run_id)
    with open(HERE / "first.calls", "a") as fh:
        fh.write("x\\n")
    context.trail = [*context.trail, "first"]
    return x + "-1"

def second(x: str, context: Ctx) -> str:
    if os.environ.get("HANG") == "1":
        (HERE / "second.started").write_text("yes")
        import time
        while True:
            time.sleep(0.05)
    context.trail = [*context.trail, "second"]
    return x + "-2"

def third(x: str, context: Ctx) -> str:
    return x + "-3:" + ",".join(context.trail)

pipeline = Step.from_callable(first) >> Step.from_callable(second) >> Step.from_callable(third)
"""


def _wait_for_expired_lease(db: Path, run_id: str, timeout_s: float = 30.0) -> None:
    import sqlite3

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            (expires,) = conn.execute(
                "SELECT lease_expires_at FROM workflow_state WHERE run_id = ?", (run_id,)
            ).fetchone()
        if expires < time.time():
            return
        time.sleep(expires - time.time() + 0.01)
    raise AssertionError("the lease never expired")


def test_resume_after_sigkill_continues_at_the_first_unfinished_step(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    # A short lease: the killed worker's run becomes claimable soon after the kill.
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///state/flujo.db"\nlease_s = 0.3\n'
    )
    env = {**os.environ, "HANG": "1", "FLUJO_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flujo", "run", "pipe.py:pipeline", "--input", "in"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(tmp_path / "second.started", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    run_id = (tmp_path / "run_id").read_text()

    # The killed run kept its row: running, past the first step, with its context.
    shown = run_cli("runs", "show", run_id, "--json", cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": ""})
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["status"] == "running"
    assert row["current_step"] == 1
    assert row["context"]["trail"] == ["first"]
    assert [s["name"] for s in row["steps"]] == ["first"]

    # Another process claims the stale run and finishes it, from another folder (the ref is
    # absolute). The dead worker's lease must expire first: that is how death is detected.
    _wait_for_expired_lease(tmp_path / "state" / "flujo.db", run_id)
    other = tmp_path / "elsewhere"
    other.mkdir()
    env2 = {"FLUJO_LOAD_PLUGINS": "", "FLUJO_CONFIG": str(tmp_path / "flujo.toml")}
    resumed = run_cli("runs", "resume", "--stale", "--json", cwd=other, env=env2)
    assert resumed.returncode == 0, resumed.stderr
    [result] = json.loads(resumed.stdout)
    assert result["status"] == "succeeded"
    assert result["output"] == "in-1-2-3:first,second"
    assert [s["name"] for s in result["steps"]] == ["first", "second", "third"]
    assert (tmp_path / "first.calls").read_text() == "x\n"  # the finished step did not re-run
    nothing_left = run_cli("runs", "resume", "--stale", "--json", cwd=other, env=env2)
    assert json.loads(nothing_left.stdout) == []

    again = run_cli("runs", "resume", run_id, cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": ""})
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: run {run_id} already succeeded; nothing to resume"


def test_resume_of_a_run_whose_pipeline_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE.replace('return x + "-2"', "raise ValueError('x')"))
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///flujo.db"\n')
    env = {"FLUJO_LOAD_PLUGINS": ""}
    failed = run_cli("run", "pipe.py:pipeline", "--input", "in", "--json", cwd=tmp_path, env=env)
    assert failed.returncode == 1
    run_id = json.loads(failed.stdout)["run_id"]
    (tmp_path / "pipe.py").rename(tmp_path / "moved.py")
    resumed = run_cli("runs", "resume", run_id, cwd=tmp_path, env=env)
    assert resumed.returncode == 2
    assert resumed.stderr.startswith(f"error: run {run_id}: its pipeline can no longer be loaded")
    assert "no such file" in resumed.stderr
    assert "Traceback" not in resumed.stderr


flaky_calls: list[str] = []


def _flaky_second(x: str) -> str:
    flaky_calls.append(x)
    if flaky_calls.count(x) == 1:
        raise ConnectionError("provider down")
    return x + "-2"


def _count_first(x: str) -> str:
    flaky_calls.append("first")
    return x + "-1"


resumable = Step.from_callable(_count_first) >> Step.from_callable(_flaky_second)


lone_flaky = Step.from_callable(_flaky_second, name="lone_flaky")


async def test_a_bare_step_is_a_one_step_pipeline_that_resumes(tmp_path: Path) -> None:
    flaky_calls.clear()
    async with Flujo(lone_flaky, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        assert [s.name for s in runner.pipeline.steps] == ["lone_flaky"]
        assert runner.pipeline_ref is not None
        assert runner.pipeline_ref.endswith("test_resume:lone_flaky")
        loaded = load_target(runner.pipeline_ref)  # what another process resumes with
        assert [s.name for s in loaded.steps] == ["lone_flaky"]
        assert loaded.version == runner.pipeline.version
        failed = await runner.run_async("x")
        assert failed.status is RunStatus.FAILED
        resumed = await runner.resume_async(failed.run_id)
    assert (resumed.status, resumed.output) == (RunStatus.SUCCEEDED, "x-2")


async def test_resume_a_failed_run_from_python(tmp_path: Path) -> None:
    flaky_calls.clear()
    state = SQLiteBackend(tmp_path / "s.db")
    async with Flujo(resumable, config=FlujoConfig(), state=state) as runner:
        assert runner.pipeline_ref is not None
        assert runner.pipeline_ref.endswith("test_resume:resumable")
        assert load_target(runner.pipeline_ref) is resumable  # another process finds it too
        failed = await runner.run_async("in")
        assert failed.status is RunStatus.FAILED
        resumed = await runner.resume_async(failed.run_id)
        assert resumed.status is RunStatus.SUCCEEDED
        assert resumed.output == "in-1-2"
        assert resumed.run_id == failed.run_id
        assert flaky_calls == ["first", "in-1", "in-1"]
        assert [s.status.value for s in resumed.steps] == ["succeeded", "succeeded"]
        with pytest.raises(ResumeError, match="already succeeded"):
            await runner.resume_async(failed.run_id)
        with pytest.raises(RunNotFoundError):
            await runner.resume_async("nope")
        stored = await state.get_run(failed.run_id)
        assert stored is not None
        assert stored.status is RunStatus.SUCCEEDED
        assert [s.attempts for s in stored.steps] == [1, 1]


async def test_resume_with_a_changed_pipeline_is_refused(tmp_path: Path) -> None:
    flaky_calls.clear()
    state = SQLiteBackend(tmp_path / "s.db")
    async with Flujo(resumable, config=FlujoConfig(), state=state) as runner:
        failed = await runner.run_async("in")
    changed = Pipeline([Step.from_callable(_count_first), Step.from_callable(str.upper, name="up")])
    async with Flujo(
        changed, config=FlujoConfig(), state=SQLiteBackend(tmp_path / "s.db")
    ) as other:
        with pytest.raises(ResumeError, match="was made by pipeline version"):
            await other.resume_async(failed.run_id)
