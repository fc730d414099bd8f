"""flujo-evals' section of ``flujo runs show``: the run's evaluations, through the real
command with only flujo-core and flujo-evals."""

from __future__ import annotations

from pathlib import Path

from flujo.testing.cli import flujo_json, run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-evals"}


def test_runs_show_has_the_runs_evaluations(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\ndef shout(text: str) -> str:\n    return text.upper()\n"
        "pipeline = Step.from_callable(shout)\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///runs.db"\n[eval]\nenabled = true\nsampling_rate = 1.0\n'
        "evaluators = ['regex']\nregex = '^[A-Z]+$'\n",
        encoding="utf-8",
    )
    run_id = flujo_json(
        "run", "pipe.py:pipeline", "--input", "fine", "--json", cwd=tmp_path, env=ENV
    )["run_id"]
    section = flujo_json("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)["sections"][
        "flujo-evals"
    ]
    assert section["error"] is None
    assert section["fields"] == {"evaluations": 1, "mean score": 1.0}
    [row] = section["data"]
    assert [row[k] for k in ("step", "evaluator", "status", "score")] == [
        "$output",
        "regex",
        "scored",
        1.0,
    ]
    text = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV).stdout
    assert "Evaluations (flujo-evals)" in text
    assert "scored" in text
