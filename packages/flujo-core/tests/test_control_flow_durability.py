"""Control-flow steps survive SIGKILL: a process is killed inside a branch, a loop, a map and
a parallel step; another process resumes the run. Every inner step committed before the kill
never runs again (executions are counted in a file, by path), and only unfinished work runs.

Real processes, real SQLite and PostgreSQL; the kill point is a marker file the hanging step
writes, not a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flujo.testing.cli import run_flujo, wait_for_file

SCRIPT = """
import asyncio, json, os, pathlib, sys
from flujo import Flujo, PipelineContext, Step
from flujo.domain.errors import RunLeasedError
from flujo.domain.scope import current_step_scope

HERE = pathlib.Path(__file__).parent
HANG_AT = os.environ.get("HANG_AT", "")

class Ctx(PipelineContext):
    seen: list[str] = []

def _count() -> str:
    path = current_step_scope().step_name
    with open(HERE / "calls.log", "a") as fh:
        fh.write(path + "\\n")
    return path

async def _maybe_hang(path: str) -> None:
    if path == HANG_AT:
        (HERE / "hang.started").write_text(path)
        while True:
            await asyncio.sleep(0.05)

def step(name: str) -> Step:
    async def run(x: int) -> int:
        path = _count()
        await _maybe_hang(path)
        return x + 1
    return Step.from_callable(run, name=name)

def route(x: int) -> str:
    _count()
    return "big" if x > 0 else "small"

def done(x: int) -> bool:
    return x >= 7

KIND = os.environ["KIND"]
if KIND == "branch":
    body = Step.branch(
        "route", route, {"big": step("b1") >> step("b2") >> step("b3"), "small": step("s1")}
    )
elif KIND == "loop":
    body = Step.loop("retry", step("draft") >> step("check"), until=done, max_iterations=5)
elif KIND == "map":
    body = Step.from_callable(lambda x: [x, x + 1, x + 2, x + 3, x + 4, x + 5], name="items")
    body = body >> Step.map("each", step("work") >> step("polish"), concurrency=2)
elif KIND == "map_together":
    # Every item at once: the items' steps finish in the same turns and commit in batches.
    body = Step.from_callable(lambda x: [x, x + 1, x + 2, x + 3, x + 4, x + 5], name="items")
    body = body >> Step.map("each", step("work") >> step("polish"), concurrency=6)
else:
    body = Step.parallel(
        "research",
        {"a": step("a1"), "b": step("b1") >> step("b2"), "c": step("c1") >> step("c2")},
        merge=lambda m: sum(m.values()),
    )
pipeline = step("first") >> body

async def main() -> None:
    mode = sys.argv[1]
    async with Flujo(pipeline, context_model=Ctx) as runner:
        if mode == "run":
            await runner.start()
            # The run id is known once the run row exists: the first step writes it.
            result = await runner.run_async(1)
        else:
            for _ in range(600):
                try:
                    result = await runner.resume_async(sys.argv[2])
                    break
                except RunLeasedError:
                    await asyncio.sleep(0.05)  # the killed worker's lease has not expired yet
        print(json.dumps(result.to_dict()))

asyncio.run(main())
"""

# Where each construct is killed (the hanging step's path) and what must have re-run.
CASES = {
    "branch": "route/big/b2",
    "loop": "retry#2/check",
    "map": "each[3]/polish",
    "map_together": "each[3]/polish",
    "parallel": "research/c/c2",
}
OUTPUTS = {
    "branch": 5,
    "loop": 8,
    "map": [4, 5, 6, 7, 8, 9],
    "map_together": [4, 5, 6, 7, 8, 9],
    "parallel": 3 + 4 + 4,
}


def _committed(uri: str, tmp_path: Path) -> tuple[str, set[str]]:
    """The run id and the paths of its committed, succeeded inner steps."""
    code = (
        "import asyncio, json, sys\n"
        "from flujo.state import open_state\n"
        "from flujo.config import load_config\n"
        "async def main():\n"
        "    state = await open_state(load_config(None))\n"
        "    [run] = await state.list_runs()\n"
        "    full = await state.get_run(run.run_id)\n"
        "    done = [s.path for s in full.inner_steps if s.result.status.value == 'succeeded']\n"
        "    print(json.dumps([run.run_id, done]))\n"
        "    await state.close()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    run_id, done = json.loads(out.stdout)
    return run_id, set(done)


def _env(**more: str) -> dict[str, str]:
    return {**os.environ, "FLUJO_LOAD_PLUGINS": "", **more}


@pytest.mark.parametrize("kind", list(CASES))
def test_sigkill_inside_a_construct_reruns_only_unfinished_inner_steps(
    kind: str, state_uri: str, tmp_path: Path
) -> None:
    (tmp_path / "pipe.py").write_text(SCRIPT)
    (tmp_path / "flujo.toml").write_text(f'[state]\nuri = "{state_uri}"\nlease_s = 0.3\n')
    proc = subprocess.Popen(
        [sys.executable, "pipe.py", "run"],
        cwd=tmp_path,
        env=_env(KIND=kind, HANG_AT=CASES[kind]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(tmp_path / "hang.started", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = Counter((tmp_path / "calls.log").read_text().split())
    run_id, committed = _committed(state_uri, tmp_path)
    assert CASES[kind] not in committed
    assert committed, "nothing inside the construct was committed before the kill"
    if kind == "map_together":
        # Killed between batches: the batches before the kill are committed whole.
        assert {f"each[{i}]/work" for i in range(6)} <= committed
    # `flujo runs show` lists the committed inner steps by path, under the running step.
    shown = run_flujo("runs", "show", run_id, cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": ""})
    assert shown.returncode == 0, shown.stderr
    for path in committed:
        assert f"  {path} " in shown.stdout

    resumed = subprocess.run(
        [sys.executable, "pipe.py", "resume", run_id],
        cwd=tmp_path,
        env=_env(KIND=kind),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "succeeded", result
    assert result["output"] == OUTPUTS[kind]
    after = Counter((tmp_path / "calls.log").read_text().split())
    again = after - before
    # Nothing committed ran again; the step that was killed did.
    assert not (set(again) & committed), f"committed inner steps ran again: {again}"
    assert again[CASES[kind]] == 1
    assert after["first"] == 1
    # A step ran at most twice: once killed (uncommitted), once to completion.
    assert all(n <= 2 for n in after.values()), after
