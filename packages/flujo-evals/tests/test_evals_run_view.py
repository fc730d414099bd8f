"""flujo-evals' section of ``flujo runs show``: the run's evaluations, through the real
command with only flujo-core and flujo-evals."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.testing.cli import run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-evals"}


def test_runs_show_has_the_runs_evaluations(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n"
        "def shout(text: str) -> str:\n"
        "    return text.upper()\n"
        "pipeline = Step.from_callable(shout)\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///runs.db"\n'
        "[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ['regex']\nregex = '^[A-Z]+$'\n",
        encoding="utf-8",
    )
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "fine", "--json", cwd=tmp_path, env=ENV)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    shown = run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)
    assert shown.returncode == 0, shown.stderr
    section = json.loads(shown.stdout)["sections"]["flujo-evals"]
    assert section["error"] is None
    assert section["fields"] == {"evaluations": 1, "mean score": 1.0}
    [row] = section["data"]
    assert (row["step"], row["evaluator"], row["status"], row["score"]) == (
        "$output",
        "regex",
        "scored",
        1.0,
    )
    text = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV)
    assert "Evaluations (flujo-evals)" in text.stdout
    assert "scored" in text.stdout
