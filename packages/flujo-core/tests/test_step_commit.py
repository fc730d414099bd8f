"""``flujo_step_commit``: a plugin's rows join the step's own commit, on both backends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flujo import Flujo, FlujoConfig, Pipeline, RunStatus, Step
from flujo.config import StateSettings
from flujo.domain.events import StepCompleted
from flujo.domain.interfaces import Migration, StepCommit
from flujo.plugin import hookimpl
from flujo.plugins.manager import PluginManager

_TABLE = Migration("notes", 1, ("CREATE TABLE notes (run_id TEXT, idx INTEGER, text TEXT)",))


class _Notes:
    """Adds one row per step, in the step's commit; records what it saw."""

    def __init__(self) -> None:
        self.dialects: list[str] = []

    @hookimpl
    def flujo_storage_migrations(self, dialect: str) -> Sequence[Migration]:
        return [_TABLE]

    @hookimpl
    def flujo_step_commit(self, event: StepCompleted, commit: StepCommit) -> None:
        self.dialects.append(commit.dialect)
        commit.add(
            "INSERT INTO notes (run_id, idx, text) VALUES (:r, :i, :t)",
            {"r": event.run_id, "i": event.index, "t": str(event.step.output)},
        )


class _Broken:
    """Adds a row, then raises: none of what it added may be committed."""

    @hookimpl
    def flujo_step_commit(self, commit: StepCommit) -> None:
        commit.add("INSERT INTO notes (run_id, idx, text) VALUES ('x', 0, 'half')")
        raise RuntimeError("boom")


async def test_plugin_rows_commit_with_their_step(state_uri: str, tmp_path: Path) -> None:
    manager = PluginManager()
    notes = _Notes()
    assert manager.register(notes, "notes").status == "ok"
    assert manager.register(_Broken(), "zz-broken").status == "ok"
    config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=manager)
    pipeline: Pipeline[Any] = Pipeline(
        [Step.from_callable(str.upper, name="up"), Step.from_callable(str.lower, name="low")]
    )
    async with Flujo(pipeline, config=config) as runner:
        result = await runner.run_async("Hi")
        assert result.status is RunStatus.SUCCEEDED
        rows = await runner.runtime.state.fetch_all("SELECT idx, text FROM notes ORDER BY idx")
        failures = [str(f) for f in runner.runtime.tasks.failures]
    assert rows == [{"idx": 0, "text": "HI"}, {"idx": 1, "text": "hi"}]
    assert set(notes.dialects) == {"sqlite" if state_uri.startswith("sqlite") else "postgresql"}
    # The broken plugin's hook is recorded, its half-made rows dropped, the run unharmed.
    assert len(failures) == 2
    assert all("zz-broken" in f and "boom" in f for f in failures)
