"""``flujo runs show`` with flujo-governance, flujo-evals and flujo-memory installed, as real
subprocesses on real SQLite and PostgreSQL state databases: the run, its steps, then each
plugin's section (policy decisions, evaluations, memory writes), as text for people and as one
JSON document; a plugin whose section fails is one error line, and the rest is still shown."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from flujo.testing.cli import run_flujo

EMAIL = "ana@example.com"
ENV = {"FLUJO_LOAD_PLUGINS": "flujo-governance,flujo-evals,flujo-memory"}

PIPE = """
from flujo import Step

def triage(text: str) -> str:
    return "ticket: " + text

def reply(ticket: str) -> str:
    return "REPLY TO " + ticket.upper()

pipeline = Step.from_callable(triage) >> Step.from_callable(reply)
"""

CONFIG = """
[governance]
policies = ["pii"]
[eval]
enabled = true
sampling_rate = 1.0
evaluators = ["regex"]
regex = "^REPLY"
[memory]
index_steps = ["reply"]
embedder = "hashing"
"""


@pytest.fixture
def state_uri(request: pytest.FixtureRequest) -> str:
    """SQLite, or a throwaway PostgreSQL schema for tests that ask for both."""
    if getattr(request, "param", "sqlite") == "postgresql":
        uri: str = request.getfixturevalue("flujo_postgres_uri")
        return uri
    return "sqlite:///runs.db"


@pytest.fixture
def run_id(tmp_path: Path, state_uri: str) -> str:
    (tmp_path / "pipe.py").write_text(PIPE, encoding="utf-8")
    config = f"[state]\nuri = {json.dumps(state_uri)}\n" + CONFIG
    (tmp_path / "flujo.toml").write_text(config, encoding="utf-8")
    ran = run_flujo(
        "run", "pipe.py:pipeline", "--input", f"write to {EMAIL}", "--json", cwd=tmp_path, env=ENV
    )
    assert ran.returncode == 0, ran.stderr
    found: str = json.loads(ran.stdout)["run_id"]
    return found


BOTH = pytest.mark.parametrize("state_uri", ["sqlite", "postgresql"], indirect=True)


@BOTH
def test_show_json_is_one_document_with_every_plugins_section(tmp_path: Path, run_id: str) -> None:
    shown = run_flujo("runs", "show", run_id[:12], "--json", cwd=tmp_path, env=ENV)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)  # the whole of stdout is one JSON document
    assert view["run_id"] == run_id
    assert [s["name"] for s in view["steps"]] == ["triage", "reply"]
    sections = view["sections"]
    assert list(sections) == ["flujo-evals", "flujo-governance", "flujo-memory"]  # load order
    assert all(s["error"] is None for s in sections.values()), sections

    decisions = sections["flujo-governance"]["data"]
    assert {(d["step"], d["stage"], d["decision"]) for d in decisions} >= {
        ("triage", "input", "redact")
    }
    assert all(d["policy"] == "pii" for d in decisions)
    assert decisions[0]["entities"] == {"EMAIL": 1}
    assert decisions[0]["rule"] == "redact"

    [evaluation] = sections["flujo-evals"]["data"]
    assert (evaluation["evaluator"], evaluation["status"]) == ("regex", "scored")
    assert evaluation["score"] == 1.0

    memory = sections["flujo-memory"]
    assert memory["data"]["indexed"] == 1
    assert memory["data"]["outbox"] == []
    assert EMAIL not in shown.stdout


@BOTH
def test_show_text_has_the_run_the_steps_and_each_section_and_no_json(
    tmp_path: Path, run_id: str
) -> None:
    shown = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith(f"run {run_id}: succeeded\n")
    for title in ("steps", "output", "Policy decisions (flujo-governance)"):
        assert f"\n{title}\n" in text, text
    assert "Evaluations (flujo-evals)" in text
    assert "Memory writes (flujo-memory)" in text
    for word in ("redact", "EMAIL:1", "regex", "scored"):
        assert word in text
    # For people: no JSON block mixed in, and the redacted e-mail never comes back.
    assert "{" not in text, text
    assert '"' not in text, text
    assert EMAIL not in text


def test_a_failing_section_is_one_error_line_and_the_rest_is_shown(
    tmp_path: Path, run_id: str
) -> None:
    # A broken evaluations table (migrations recorded, wrong columns): flujo-evals' read fails.
    with closing(sqlite3.connect(tmp_path / "runs.db")) as db:
        db.execute("DROP TABLE evaluations")
        db.execute("CREATE TABLE evaluations (unused TEXT)")
        db.commit()
    shown = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    at = lines.index("flujo-evals")
    assert lines[at + 1].startswith("  error: StateError: state query failed: no such column"), (
        lines[at : at + 2]
    )
    assert "Policy decisions (flujo-governance)" in shown.stdout
    assert "Memory writes (flujo-memory)" in shown.stdout

    as_json = run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)
    assert as_json.returncode == 0, as_json.stderr
    sections = json.loads(as_json.stdout)["sections"]
    assert sections["flujo-evals"]["error"].startswith("StateError: ")
    assert set(sections["flujo-evals"]) == {"error"}
    assert sections["flujo-governance"]["error"] is None
