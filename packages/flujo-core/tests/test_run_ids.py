"""Run ids as people type them: a unique prefix works, an ambiguous one lists the candidates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.config import StateSettings
from flujo.domain.errors import RunNotFoundError
from flujo.state import open_backend
from flujo.state.run_ids import AmbiguousRunIdError, resolve_run_id
from flujo.testing.cli import run_flujo


async def test_prefixes_resolve_on_each_backend(state_uri: str, tmp_path: Path) -> None:
    state = open_backend(StateSettings(uri=state_uri), tmp_path)
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    # 17 runs: two of them must share their first hex digit (pigeonhole), whatever the ids.
    async with Flujo(pipeline, config=FlujoConfig(), state=state) as runner:
        ids = [(await runner.run_async(f"r{i}")).run_id for i in range(17)]
        for run_id in ids:
            assert await resolve_run_id(state, run_id) == run_id
            assert await resolve_run_id(state, run_id[:12]) == run_id
            assert await resolve_run_id(state, run_id[:12].upper()) == run_id
        shared, _ = Counter(run_id[0] for run_id in ids).most_common(1)[0]
        with pytest.raises(AmbiguousRunIdError, match=f"run id prefix '{shared}' matches"):
            await resolve_run_id(state, shared)
        for bad in ("zz", "%", "_", "", ids[0] + "0"):
            with pytest.raises(RunNotFoundError, match="no run with id"):
                await resolve_run_id(state, bad)


def test_runs_show_and_resume_take_a_prefix(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\npipeline = Step.from_callable(str.upper, name='up')\n"
    )
    env = {"FLUJO_LOAD_PLUGINS": ""}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split('"run_id": "', 1)[1][:32]
    shown = run_flujo("runs", "show", run_id[:12], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"run {run_id}: succeeded")
    resumed = run_flujo("runs", "resume", run_id[:12], cwd=tmp_path, env=env)
    assert resumed.returncode == 2
    assert "already succeeded" in resumed.stderr
