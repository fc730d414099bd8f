"""The outbox row is written in the step's own commit, on both state backends.

A process killed (SIGKILL) right after a step's commit, or while the commit is being
assembled, never leaves a committed step without its outbox row nor an outbox row without its
step; and a worker fenced out by another's take commits neither.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, Pipeline, PipelineContext, RunStatus, Step
from flujo.config import StateSettings, load_config
from flujo.domain.errors import LeaseLostError
from flujo.plugins.manager import PluginManager
from flujo.state import open_backend
from flujo_memory.outbox import TABLE, migrations


def _write_config(root: Path, flujo_state_uri: str) -> Path:
    path = root / "flujo.toml"
    path.write_text(
        f'[state]\nuri = "{flujo_state_uri}"\n\n[memory]\nstore = "memory"\nembedder = "hashing"\n'
        'index_steps = ["*"]\n'
    )
    return path


# A plugin that kills its own process at one point of step 0's life. Its name orders it
# before flujo-memory ("after": its observer runs first, as any plugin's may) or after it
# ("during": memory has added its row to the commit, which is not yet executed).
_CHILD = """
import asyncio, os, signal, sys
from flujo import Flujo, Pipeline, Step
from flujo.config import load_config
from flujo.plugin import hookimpl
from flujo.plugins.manager import PluginManager
import flujo_memory.plugin

when = sys.argv[2]


class KillAfter:
    @hookimpl
    def flujo_step_completed(self, event):
        if event.index == 0:
            os.kill(os.getpid(), signal.SIGKILL)


class KillDuring:
    @hookimpl
    def flujo_step_commit(self, event, commit):
        if event.index == 0:
            os.kill(os.getpid(), signal.SIGKILL)


def first(x: str) -> str:
    return "fact: " + x


def second(x: str) -> str:
    return x + " again"


manager = PluginManager()
if when == "after":
    manager.register(KillAfter(), "aaa-killer")
manager.register(flujo_memory.plugin, "flujo-memory")
if when == "during":
    manager.register(KillDuring(), "zzz-killer")
config = load_config(sys.argv[1], plugin_manager=manager, environ={})
pipeline = Pipeline(
    [Step.from_callable(first, name="first"), Step.from_callable(second, name="second")]
)


async def main():
    async with Flujo(pipeline, config=config) as runner:
        await runner.run_async("backups at 2am")


asyncio.run(main())
"""


async def _rows(
    flujo_state_uri: str, root: Path
) -> tuple[set[tuple[str, int]], set[tuple[str, str]]]:
    """``({(run_id, step index)}, {(run_id, step name)})``: committed steps, outbox rows."""
    state = open_backend(StateSettings(uri=flujo_state_uri), root)
    await state.open(migrations(state.dialect))
    try:
        steps = await state.fetch_all("SELECT run_id, idx FROM step_results")
        rows = await state.fetch_all(f"SELECT run_id, step_name FROM {TABLE}")
    finally:
        await state.close()
    return (
        {(str(r["run_id"]), int(r["idx"])) for r in steps},
        {(str(r["run_id"]), str(r["step_name"])) for r in rows},
    )


@pytest.mark.parametrize("when", ["after", "during"])
async def test_a_killed_process_never_splits_a_step_from_its_outbox_row(
    tmp_path: Path, flujo_state_uri: str, when: str
) -> None:
    config = _write_config(tmp_path, flujo_state_uri)
    (tmp_path / "child.py").write_text(textwrap.dedent(_CHILD))
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(tmp_path / "child.py"), str(config), when],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr  # killed where the test meant it to be
    steps, outbox = await _rows(flujo_state_uri, tmp_path)
    names = {0: "first", 1: "second"}
    assert {(run, names[idx]) for run, idx in steps} == outbox
    # "after": step 0 committed (with its row); "during": nothing of step 0 committed.
    assert len(steps) == (1 if when == "after" else 0)


class _Ctx(PipelineContext):
    pass


async def test_a_fenced_out_worker_commits_no_outbox_row(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    import flujo_memory.plugin

    manager = PluginManager()
    manager.register(flujo_memory.plugin, "flujo-memory")
    config = load_config(
        _write_config(tmp_path, flujo_state_uri), plugin_manager=manager, environ={}
    )

    async def stolen(x: str, context: _Ctx) -> str:
        # Another worker takes the run over while this step runs: its commit must be refused,
        # the outbox row with it.
        thief = open_backend(StateSettings(uri=flujo_state_uri), tmp_path)
        await thief.open()
        try:
            await thief.execute(
                "UPDATE workflow_state SET lease_owner = 'thief', lease_epoch = lease_epoch + 1 "
                "WHERE run_id = :r",
                {"r": context.run_id},
            )
        finally:
            await thief.close()
        return "fact: " + x

    pipeline: Pipeline[Any] = Pipeline([Step.from_callable(stolen, name="stolen")])
    async with Flujo(pipeline, config=config, context_model=_Ctx) as runner:
        with pytest.raises(LeaseLostError):
            await runner.run_async("backups at 2am")
        assert runner.runtime.tasks.failures == [] or all(
            "flujo-memory" not in str(f) for f in runner.runtime.tasks.failures
        )
    steps, outbox = await _rows(flujo_state_uri, tmp_path)
    assert steps == set()
    assert outbox == set()


async def test_a_step_commit_keeps_the_outbox_row_on_a_normal_run(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    import flujo_memory.plugin

    manager = PluginManager()
    manager.register(flujo_memory.plugin, "flujo-memory")
    config = load_config(
        _write_config(tmp_path, flujo_state_uri), plugin_manager=manager, environ={}
    )
    pipeline: Pipeline[Any] = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(pipeline, config=config) as runner:
        result = await runner.run_async("backups at 2am")
        assert result.status is RunStatus.SUCCEEDED
        report = await runner.services["memory"].flush()
        assert report is not None
        hits = await runner.services["memory"].search("BACKUPS", limit=1)
    assert [h.memory.text for h in hits] == ["BACKUPS AT 2AM"]
