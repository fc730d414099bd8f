"""The example's step wrapper and run-view section: with ``[example] spans = true`` every step
is timed inside a span that is current for the step's code, and ``flujo runs show`` lists the
spans; without it nothing is wrapped, stored or shown. Real runner and real SQLite state;
the command line as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.testing.cli import run_flujo

from flujo_plugin_example.spans import CURRENT_STEP

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-plugin-example"}
PIPE = """
from flujo import Step
from flujo_plugin_example.spans import CURRENT_STEP

def first(text: str) -> str:
    return f"{text} (in span {CURRENT_STEP.get()})"

def second(text: str) -> str:
    return text.upper()

pipeline = Step.from_callable(first) >> Step.from_callable(second)
"""


def _project(tmp_path: Path, spans: bool) -> Path:
    (tmp_path / "pipe.py").write_text(PIPE, encoding="utf-8")
    (tmp_path / "flujo.toml").write_text(
        f'[state]\nuri = "sqlite:///runs.db"\n[example]\nspans = {str(spans).lower()}\n',
        encoding="utf-8",
    )
    return tmp_path


def _run_and_show(project: Path) -> tuple[dict[str, object], dict[str, object]]:
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "--json", cwd=project, env=ENV)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    shown = run_flujo("runs", "show", result["run_id"], "--json", cwd=project, env=ENV)
    assert shown.returncode == 0, shown.stderr
    return result, json.loads(shown.stdout)


def test_spans_wrap_each_step_and_show_in_the_runs_view(tmp_path: Path) -> None:
    result, view = _run_and_show(_project(tmp_path, spans=True))
    assert result["output"] == "HI (IN SPAN FIRST)"  # the span was current inside the step
    section = view["sections"]["flujo-plugin-example"]  # type: ignore[index]
    assert section["error"] is None
    assert section["title"] == "Step spans"
    assert [row[:2] for row in section["rows"]] == [[0, "first"], [1, "second"]]
    assert all(row[2] >= 0 for row in section["rows"])
    text = run_flujo("runs", "show", str(result["run_id"]), cwd=tmp_path, env=ENV)
    assert "Step spans (flujo-plugin-example)" in text.stdout


def test_without_spans_nothing_is_wrapped_or_shown(tmp_path: Path) -> None:
    result, view = _run_and_show(_project(tmp_path, spans=False))
    assert result["output"] == "HI (IN SPAN NONE)"
    assert view["sections"] == {}
    assert CURRENT_STEP.get() is None
