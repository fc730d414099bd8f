"""flujo-governance's section of ``flujo runs show``: the run's policy decisions, scrubbed,
through the real command with only flujo-core and flujo-governance."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.testing.cli import run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-governance"}
EMAIL = "ana@example.com"


def test_runs_show_has_the_runs_policy_decisions(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n"
        "def echo(text: str) -> str:\n"
        "    return text\n"
        "pipeline = Step.from_callable(echo)\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///runs.db"\n[governance]\npolicies = ["pii"]\n',
        encoding="utf-8",
    )
    ran = run_flujo(
        "run", "pipe.py:pipeline", "--input", f"mail {EMAIL}", "--json", cwd=tmp_path, env=ENV
    )
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    shown = run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)
    assert shown.returncode == 0, shown.stderr
    section = json.loads(shown.stdout)["sections"]["flujo-governance"]
    assert section["error"] is None
    assert section["fields"] == {"decisions": 1, "redact": 1}
    [decision] = section["data"]
    assert decision["step"] == "echo"
    assert (decision["policy"], decision["stage"], decision["decision"]) == (
        "pii",
        "input",
        "redact",
    )
    assert (decision["rule"], decision["entities"]) == ("redact", {"EMAIL": 1})
    text = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV)
    assert "Policy decisions (flujo-governance)" in text.stdout
    assert "EMAIL:1" in text.stdout
    assert EMAIL not in shown.stdout + text.stdout
