"""flujo-governance's section of ``flujo runs show``: the run's policy decisions, scrubbed,
through the real command with only flujo-core and flujo-governance."""

from __future__ import annotations

from pathlib import Path

from flujo.testing.cli import flujo_json, run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-governance"}
EMAIL = "ana@example.com"


def test_runs_show_has_the_runs_policy_decisions(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\ndef echo(text: str) -> str:\n    return text\n"
        "pipeline = Step.from_callable(echo)\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///runs.db"\n[governance]\npolicies = ["pii"]\n', encoding="utf-8"
    )
    run_id = flujo_json(
        "run", "pipe.py:pipeline", "--input", f"mail {EMAIL}", "--json", cwd=tmp_path, env=ENV
    )["run_id"]
    view = flujo_json("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)
    section = view["sections"]["flujo-governance"]
    assert section["error"] is None
    assert section["fields"] == {"decisions": 1, "redact": 1}
    [decision] = section["data"]
    assert {k: decision[k] for k in ("step", "policy", "stage", "decision", "rule")} == {
        "step": "echo",
        "policy": "pii",
        "stage": "input",
        "decision": "redact",
        "rule": "redact",
    }
    assert decision["entities"] == {"EMAIL": 1}
    text = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV).stdout
    assert "Policy decisions (flujo-governance)" in text
    assert "EMAIL:1" in text
    assert EMAIL not in str(view) + text
