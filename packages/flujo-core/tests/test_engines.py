"""The execution-engine seam: ``[engine] kind`` / ``flujo run --engine``, the ``local`` engine,
and the runner calls an engine drives a run with (one step at a time, under its own lease)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, Pipeline, Step
from flujo.config import FlujoConfig
from flujo.domain.errors import ConfigError, ResumeError, RunLeasedError
from flujo.domain.models import RunStatus
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import run_flujo

PIPE = """
from flujo import Step

def shout(text: str) -> str:
    return text.upper()

pipeline = Step.from_callable(shout)
"""
ENV = {"FLUJO_LOAD_PLUGINS": ""}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(PIPE)
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    return tmp_path


def test_local_engine_is_the_default_and_can_be_named(project: Path) -> None:
    for extra in ((), ("--engine", "local")):
        proc = run_flujo(
            "run", "pipe.py:pipeline", "--input", "hi", "-q", *extra, cwd=project, env=ENV
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "HI"


def test_unknown_engine_option_is_one_line_listing_the_registered_ones(project: Path) -> None:
    proc = run_flujo(
        "run", "pipe.py:pipeline", "--input", "hi", "--engine", "nope", cwd=project, env=ENV
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --engine: unknown engine 'nope'; registered: local (flujo-core)"
    ]
    assert not (project / "runs.db").exists()  # refused before anything was stored


def test_unknown_engine_in_config_names_the_file_and_key(project: Path) -> None:
    (project / "flujo.toml").write_text('[engine]\nkind = "nope"\n')
    proc = run_flujo("run", "pipe.py:pipeline", "--input", "hi", cwd=project, env=ENV)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert (
        "flujo.toml: [engine] kind: unknown engine 'nope'; registered: local (flujo-core)"
        in lines[0]
    )


def test_engine_section_rejects_unknown_keys(project: Path) -> None:
    (project / "flujo.toml").write_text('[engine]\nknd = "local"\n')
    proc = run_flujo("run", "pipe.py:pipeline", "--input", "hi", cwd=project, env=ENV)
    assert proc.returncode == 2
    assert "[engine]" in proc.stderr
    assert "knd" in proc.stderr


async def test_step_by_step_under_an_engine_owned_lease(
    tmp_path: Path, config: FlujoConfig
) -> None:
    """``until``/``owner``: a run stored without executing, then one step per call; each call
    takes the engine's lease over (a live one), steps already committed are never run again,
    and another worker cannot take the run while the engine's lease is live."""
    calls: list[str] = []

    def first(x: str) -> str:
        calls.append("first")
        return x + "1"

    def second(x: str) -> str:
        calls.append("second")
        return x + "2"

    pipeline = Pipeline([Step.from_callable(first), Step.from_callable(second)])
    state = SQLiteBackend(tmp_path / "s.db")
    async with Flujo(pipeline, config=config, state=state) as engine_side:
        created = await engine_side.run_async("x", until=0, owner="engine:a")
        assert created.status is RunStatus.RUNNING
        assert calls == []
        run_id = created.run_id
        stored = await state.get_run(run_id)
        assert stored is not None
        assert stored.status is RunStatus.RUNNING

        async with Flujo(pipeline, config=config, state=state) as other:
            with pytest.raises(RunLeasedError):  # the engine's lease is live: not another's
                await other.resume_async(run_id)

        one = await engine_side.resume_async(run_id, until=1, owner="engine:a")
        assert one.status is RunStatus.RUNNING
        assert calls == ["first"]
        again = await engine_side.resume_async(run_id, until=1, owner="engine:a")
        assert again.status is RunStatus.RUNNING
        assert calls == ["first"]
        done = await engine_side.resume_async(run_id, until=2, owner="engine:a")
        assert done.status is RunStatus.SUCCEEDED
        assert done.output == "x12"
        assert calls == ["first", "second"]


async def test_run_async_hands_new_runs_to_the_chosen_engine(
    tmp_path: Path, config: FlujoConfig
) -> None:
    """``Flujo(engine=...)`` (else ``[engine] kind``): the engine gets each new run; what it
    calls back on the runner (``until``/``owner``) runs here, not through the engine again."""

    class Recording:
        name = "recording"

        def __init__(self) -> None:
            self.inputs: list[object] = []

        async def run(self, runner: Any, input: Any, *, context: Any = None) -> Any:
            self.inputs.append(input)
            return await runner.run_async(input, context=context, owner="recording")

        async def answered(self, run_id: str) -> str | None:
            return None

    engine = Recording()
    assert config.plugin_manager is not None
    config.plugin_manager.registry.add("engines", "recording", lambda c: engine, "tests")
    pipeline = Step.from_callable(lambda x: x * 2, name="double")
    async with Flujo(
        pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db"), engine="recording"
    ) as runner:
        result = await runner.run_async(21)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, 42)
    assert engine.inputs == [21]
    async with Flujo(
        pipeline, config=config, state=SQLiteBackend(tmp_path / "t.db"), engine="nope"
    ) as bad:
        with pytest.raises(
            ConfigError,
            match=r"Flujo\(engine='nope'\): unknown engine 'nope'; "
            r"registered: local \(flujo-core\), recording \(tests\)",
        ):
            await bad.run_async(1)


async def test_the_stale_drain_leaves_engine_driven_runs_to_their_engine(tmp_path: Path) -> None:
    """A run stored with ``engine=`` whose lease lapsed (the engine's workers are down) is not
    claimed by ``resume_stale_async``; a local run in the same state, equally stale, is."""
    import asyncio

    from flujo.config import load_config

    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\nlease_s = 0.5\n')
    config = load_config(tmp_path / "flujo.toml", environ=ENV)
    pipeline = Pipeline([Step.from_callable(lambda x: x + "!", name="bang")])
    async with Flujo(pipeline, config=config) as runner:
        driven = await runner.run_async("x", until=0, owner="engine:a", engine="elsewhere")
        local = await runner.run_async("y", until=0, owner="gone-worker")
        await asyncio.sleep(config.state.lease_s + 0.3)  # both leases lapse, unrenewed
        resumed = await runner.resume_stale_async()
        stored = await runner.runtime.state.get_run(driven.run_id)
    assert [r.run_id for r in resumed] == [local.run_id]
    assert stored is not None
    assert (stored.status, stored.engine, stored.current_step) == (
        RunStatus.RUNNING,
        "elsewhere",
        0,
    )


async def test_resume_async_hands_an_engine_driven_run_to_its_engine(
    tmp_path: Path, config: FlujoConfig
) -> None:
    """``resume_async`` on a run another engine drives (recorded with it) calls that engine's
    ``resume`` and returns what it reports: the run is never executed here alongside it. An
    engine without ``resume`` is refused in one line, not run locally (never fail open)."""
    calls: list[str] = []

    class Driving:
        name = "driving"

        def __init__(self) -> None:
            self.resumed: list[str] = []

        async def run(self, runner: Any, input: Any, *, context: Any = None) -> Any:
            raise AssertionError("not a new run")

        async def answered(self, run_id: str) -> str | None:
            return None

        async def resume(self, runner: Any, run_id: str) -> Any:
            self.resumed.append(run_id)
            return "the engine's answer"

    class Older:  # written before `resume` was part of the protocol
        name = "older"

        async def run(self, runner: Any, input: Any, *, context: Any = None) -> Any:
            raise AssertionError("not a new run")

        async def answered(self, run_id: str) -> str | None:
            return None

    driving = Driving()
    assert config.plugin_manager is not None
    config.plugin_manager.registry.add("engines", "driving", lambda c: driving, "tests")
    config.plugin_manager.registry.add("engines", "older", lambda c: Older(), "tests")

    def step(x: str) -> str:
        calls.append(x)
        return x + "!"

    pipeline = Pipeline([Step.from_callable(step, name="bang")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s.db")) as runner:
        driven = await runner.run_async("x", until=0, owner="engine:a", engine="driving")
        assert await runner.resume_async(driven.run_id) == "the engine's answer"
        old = await runner.run_async("y", until=0, owner="engine:b", engine="older")
        with pytest.raises(ResumeError, match=r"driven by engine 'older', which cannot resume"):
            await runner.resume_async(old.run_id)
        stored = await runner.runtime.state.get_run(driven.run_id)
    assert driving.resumed == [driven.run_id]
    assert calls == []
    assert stored is not None
    assert (stored.status, stored.current_step) == (RunStatus.RUNNING, 0)


async def test_runs_show_and_list_name_the_engine_of_each_run(tmp_path: Path) -> None:
    """``flujo runs show`` (text and ``--json``) and ``runs list --json`` say which engine
    drives a run: the one recorded with it, else ``local`` (this process's runner)."""
    import json

    from flujo.config import load_config

    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    config = load_config(tmp_path / "flujo.toml", environ=ENV)
    pipeline = Pipeline([Step.from_callable(lambda x: x + "!", name="bang")])
    async with Flujo(pipeline, config=config) as runner:
        driven = await runner.run_async("x", until=0, owner="engine:a", engine="elsewhere")
        local = await runner.run_async("y")
    expected = {driven.run_id: "elsewhere", local.run_id: "local"}
    for run_id, engine in expected.items():
        shown = run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["engine"] == engine
        text = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV)
        assert text.returncode == 0, text.stderr
        assert [line.split() for line in text.stdout.splitlines() if "engine" in line] == [
            ["engine", engine]
        ]
    listed = run_flujo("runs", "list", "--json", cwd=tmp_path, env=ENV)
    assert {row["run_id"]: row["engine"] for row in json.loads(listed.stdout)} == expected
