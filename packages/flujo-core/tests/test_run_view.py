"""``flujo_run_view``: each plugin's section of a run's view, and how failures are contained.

Real plugin manager, real SQLite state with a real stored run; the plugins are small classes
registered in-process (and, for the command line, through ``runs show`` in a subprocess with
no plugin installed: the run and its steps alone).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, Step, hookimpl
from flujo.application.run_view import plugin_sections
from flujo.plugin import RunRecord, RunViewSection, StateBackend
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import run_flujo


class Good:
    @hookimpl
    def flujo_run_view(self, run: RunRecord, state: StateBackend) -> Awaitable[RunViewSection]:
        async def section() -> RunViewSection:
            [row] = await state.fetch_all("SELECT COUNT(*) AS n FROM workflow_state", {})
            return RunViewSection(
                "Good things",
                fields={"runs in db": row["n"], "steps": len(run.steps)},
                columns=("step", "status"),
                rows=[(s.name, s.status.value) for s in run.steps],
                payload={"first": run.steps[0].name},
            )

        return section()


class Sync:
    @hookimpl
    def flujo_run_view(self, run: RunRecord) -> RunViewSection:
        return RunViewSection("Plain", fields={"id": run.run_id[:4]})


class Nothing:
    @hookimpl
    def flujo_run_view(self) -> None:
        return None


class Raises:
    @hookimpl
    def flujo_run_view(self) -> RunViewSection:
        raise RuntimeError("table gone\nsecond line")


class RaisesLater:
    @hookimpl
    def flujo_run_view(self) -> Awaitable[RunViewSection]:
        async def section() -> RunViewSection:
            raise KeyError("x")

        return section()


class WrongType:
    @hookimpl
    def flujo_run_view(self) -> Any:
        return {"title": "a dict"}


class BadPayload:
    @hookimpl
    def flujo_run_view(self) -> RunViewSection:
        return RunViewSection("Bad", payload={"when": object()})


class RaggedRows:
    @hookimpl
    def flujo_run_view(self) -> RunViewSection:
        return RunViewSection("Ragged", columns=("a", "b"), rows=[("only one",)])


class NotFinite:
    @hookimpl
    def flujo_run_view(self) -> RunViewSection:
        return RunViewSection("NaN", fields={"score": float("nan")})


class Exits:
    @hookimpl
    def flujo_run_view(self) -> RunViewSection:
        raise SystemExit(3)


class Hangs:
    @hookimpl
    def flujo_run_view(self) -> Awaitable[RunViewSection]:
        return asyncio.Event().wait()  # type: ignore[return-value]


def _first(x: str) -> str:
    return x + "!"


async def _stored_run(tmp_path: Path) -> tuple[FlujoConfig, str]:
    config = FlujoConfig(plugin_manager=PluginManager())
    pipeline = Pipeline([Step.from_callable(_first, name="first")])
    async with Flujo(pipeline, config=config, state=SQLiteBackend(tmp_path / "s")) as f:
        result = await f.run_async("hi")
    return config, result.run_id


async def test_sections_in_load_order_failures_contained(tmp_path: Path) -> None:
    config, run_id = await _stored_run(tmp_path)
    manager = config.plugin_manager
    assert manager is not None
    plugins = [
        ("a-good", Good()),
        ("b-raises", Raises()),
        ("c-nothing", Nothing()),
        ("d-later", RaisesLater()),
        ("e-wrong", WrongType()),
        ("f-payload", BadPayload()),
        ("g-ragged", RaggedRows()),
        ("h-nan", NotFinite()),
        ("i-hangs", Hangs()),
        ("i-exits", Exits()),
        ("j-sync", Sync()),
    ]
    for name, plugin in plugins:
        assert manager.register(plugin, name).status == "ok", name
    state = SQLiteBackend(tmp_path / "s")
    await state.open()
    try:
        run = await state.get_run(run_id)
        assert run is not None
        found = await plugin_sections(run, state, config, timeout_s=0.2)
    finally:
        await state.close()
    by_name = {f.plugin: f for f in found}
    assert [f.plugin for f in found] == [n for n, _ in plugins if n != "c-nothing"]
    good = by_name["a-good"].to_dict()
    assert good == {
        "title": "Good things",
        "fields": {"runs in db": 1, "steps": 1},
        "columns": ["step", "status"],
        "rows": [["first", "succeeded"]],
        "data": {"first": "first"},
        "error": None,
    }
    assert by_name["j-sync"].section == RunViewSection("Plain", fields={"id": run_id[:4]})
    errors = {n: f.error for n, f in by_name.items() if f.error is not None}
    assert errors == {
        "b-raises": "RuntimeError: table gone second line",
        "d-later": "KeyError: 'x'",
        "e-wrong": "TypeError: returned dict, not a RunViewSection",
        "f-payload": "TypeError: payload['when']: object is not a str, number, bool or None",
        "g-ragged": "ValueError: rows[0] has not one value per column (2)",
        "h-nan": "ValueError: fields['score']: nan is not a finite number",
        "i-hangs": "no answer within 0.2s",
        "i-exits": "SystemExit: 3",
    }
    assert by_name["b-raises"].to_dict() == {"error": "RuntimeError: table gone second line"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n"
        "def shout(text: str) -> dict:\n"
        "    return {'said': text.upper(), 'lines': ['a\\nb', '\\x1b[2J']}\n"
        "pipeline = Step.from_callable(shout)\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    return tmp_path


def test_runs_show_text_for_people_and_one_json_document(project: Path) -> None:
    env = {"FLUJO_LOAD_PLUGINS": ""}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "--json", cwd=project, env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    shown = run_flujo("runs", "show", run_id, cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"run {run_id}: succeeded"
    assert "steps" in lines
    assert "output" in lines
    out = lines[lines.index("output") + 1 :]
    # Nested values as indented lines, multi-line text kept inside its indentation, a stored
    # escape sequence shown escaped (it cannot repaint the terminal), no JSON.
    assert out[:5] == ["  said: HI", "  lines:", "    - a", "      b", "    - \\x1b[2J"]
    assert "\x1b" not in shown.stdout
    assert "{" not in shown.stdout
    as_json = run_flujo("runs", "show", run_id[:10], "--json", cwd=project, env=env)
    view = json.loads(as_json.stdout)
    assert view["output"] == {"said": "HI", "lines": ["a\nb", "\x1b[2J"]}
    assert view["sections"] == {}


def test_text_escapes_what_could_repaint_or_reorder_the_terminal() -> None:
    from flujo.cli._view import clean, section_lines

    assert clean("a\x1b[2Jb\u202eevil\u2066c\x9bd") == "a\\x1b[2Jb\\u202eevil\\u2066c\\x9bd"
    lines = section_lines(
        RunViewSection("T\x1b]0;x\x07", fields={"k\n2": "v\r"}, columns=("c",), rows=[("x\ny",)]),
        "p",
    )
    assert lines == ["T\\x1b]0;x\\x07 (p)", "  k 2  v\\r", "  c", "  x y"]


def test_runs_show_text_lists_inner_steps_by_path(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n"
        "def split(text: str) -> list[str]:\n"
        "    return text.split()\n"
        "def shout(word: str) -> str:\n"
        "    return word.upper()\n"
        "pipeline = Step.from_callable(split) >> Step.map('each', Step.from_callable(shout))\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    env = {"FLUJO_LOAD_PLUGINS": ""}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "a b", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    view = json.loads(run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=env).stdout)
    paths = [s["path"] for s in view["inner_steps"]]
    assert len(paths) == 2
    shown = run_flujo("runs", "show", run_id, cwd=tmp_path, env=env)
    lines = shown.stdout.splitlines()
    at = lines.index("inner steps")
    assert lines[at + 1].split()[:2] == ["path", "status"]
    assert [ln.split()[0] for ln in lines[at + 2 : at + 4]] == paths


class Cancels:
    """A section whose own work was cancelled (not the view): an error line like any other."""

    @hookimpl
    def flujo_run_view(self) -> Awaitable[RunViewSection]:
        async def section() -> RunViewSection:
            raise asyncio.CancelledError

        return section()


class HangsStarted:
    def __init__(self) -> None:
        self.started = asyncio.Event()

    @hookimpl
    def flujo_run_view(self) -> Awaitable[RunViewSection]:
        async def section() -> RunViewSection:
            self.started.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        return section()


async def test_cancelling_the_view_propagates_and_a_sections_own_cancel_is_contained(
    tmp_path: Path,
) -> None:
    config, run_id = await _stored_run(tmp_path)
    manager = config.plugin_manager
    assert manager is not None
    hangs = HangsStarted()
    assert manager.register(Cancels(), "a-cancels").status == "ok"
    assert manager.register(hangs, "b-hangs").status == "ok"
    state = SQLiteBackend(tmp_path / "s")
    await state.open()
    try:
        run = await state.get_run(run_id)
        assert run is not None
        view = asyncio.create_task(plugin_sections(run, state, config, timeout_s=30))
        await asyncio.wait_for(hangs.started.wait(), 60)  # a-cancels has answered
        view.cancel()
        # The view's caller cancelled it (Ctrl-C in `flujo runs show`, a closed web request):
        # the cancel reaches the caller instead of becoming one more error section.
        with pytest.raises(asyncio.CancelledError):
            await view
        manager.unregister(name="b-hangs")
        found = await plugin_sections(run, state, config, timeout_s=30)
    finally:
        await state.close()
    assert [(f.plugin, f.error) for f in found] == [("a-cancels", "CancelledError:")]


class Interrupts:
    @hookimpl
    def flujo_run_view(self) -> RunViewSection:
        raise KeyboardInterrupt


async def test_a_ctrl_c_inside_a_section_stops_the_view(tmp_path: Path) -> None:
    config, run_id = await _stored_run(tmp_path)
    manager = config.plugin_manager
    assert manager is not None
    assert manager.register(Interrupts(), "a-interrupts").status == "ok"
    state = SQLiteBackend(tmp_path / "s")
    await state.open()
    try:
        run = await state.get_run(run_id)
        assert run is not None
        with pytest.raises(KeyboardInterrupt):
            await plugin_sections(run, state, config, timeout_s=30)
    finally:
        await state.close()
