"""flujo-core's own backends pass the state backend conformance suite a plugin's must pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from flujo.config import StateSettings
from flujo.domain.interfaces import StateBackend, StepWrite
from flujo.state import open_backend
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.conformance import StateBackendConformance


class TestSQLiteBackend(StateBackendConformance):
    @pytest.fixture
    def make_state(self, tmp_path: Path) -> Callable[[], StateBackend]:
        settings = StateSettings(uri="sqlite:///state/flujo.db")
        return lambda: open_backend(settings, tmp_path)


class TestPostgresBackend(StateBackendConformance):
    @pytest.fixture
    def make_state(self, flujo_postgres_uri: str, tmp_path: Path) -> Callable[[], StateBackend]:
        settings = StateSettings(uri=flujo_postgres_uri)
        return lambda: open_backend(settings, tmp_path)


class _DropsWrites(SQLiteBackend):
    """Broken: commits the step without the plugins' writes (the bug the suite must catch)."""

    async def save_step(self, *args: Any, writes: Sequence[StepWrite] = (), **kw: Any) -> None:
        await super().save_step(*args, **kw)
        for write in writes:  # ...in a transaction of their own, after the step's
            await self.execute(write.sql, write.params)


class _IgnoresFence(SQLiteBackend):
    """Broken: writes the plugins' rows even when the step's fence refuses the commit."""

    async def save_step(self, *args: Any, writes: Sequence[StepWrite] = (), **kw: Any) -> None:
        for write in writes:
            await self.execute(write.sql, write.params)
        await super().save_step(*args, **kw)


@pytest.mark.parametrize("broken", [_DropsWrites, _IgnoresFence])
async def test_the_suite_catches_writes_outside_the_steps_transaction(
    tmp_path: Path, broken: type[SQLiteBackend]
) -> None:
    from flujo.testing.conformance.state import _TABLE

    backend = broken(tmp_path / "state.db")
    await backend.open((_TABLE,))
    try:
        with pytest.raises(AssertionError):
            await StateBackendConformance().test_plugin_writes_commit_in_the_steps_own_transaction(
                backend
            )
    finally:
        await backend.close()
