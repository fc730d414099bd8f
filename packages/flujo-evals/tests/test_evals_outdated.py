"""A database whose flujo-evals tables are older than the installed flujo-evals
(upgraded since the runs were recorded): reads never answer "no evaluations"
from it. They fail with one line naming the database, the plugin, the versions and the fix;
``flujo runs show`` shows that line as the section's error; ``flujo state upgrade`` fixes it.
A database where the plugin's tables were never created still has nothing recorded. Both
backends, through the real command with only flujo-core and flujo-evals."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.testing.cli import flujo_json, run_flujo, run_flujo_after_upgrade
from flujo.testing.state import create_core_state, outdated_tables_error
from flujo_evals.storage import OWNER, migrations

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-evals"}
MODULE = "flujo_evals.storage"


def _setup(root: Path, uri: str) -> str:
    (root / "pipe.py").write_text(
        "from flujo import Step\ndef echo(text: str) -> str:\n    return text\n"
        "pipeline = Step.from_callable(echo)\n",
        encoding="utf-8",
    )
    (root / "flujo.toml").write_text(
        f'[state]\nuri = "{uri}"\n[eval]\nenabled = true\nsampling_rate = 1.0\n'
        'evaluators = ["regex"]\nregex = "."\n',
        encoding="utf-8",
    )
    run: dict[str, str] = flujo_json(
        "run", "pipe.py:pipeline", "--input", "mail ana@example.com", "--json", cwd=root, env=ENV
    )
    return run["run_id"]


def test_reads_of_outdated_tables_fail_until_upgraded(tmp_path: Path, flujo_state_uri: str) -> None:
    run_id = _setup(tmp_path, flujo_state_uri)
    expected = outdated_tables_error(flujo_state_uri, OWNER, migrations("sqlite"))
    for args in (["evals", "list"], ["evals", "list", "--json"], ["evals", "summary"]):
        proc = run_flujo_after_upgrade(MODULE, *args, cwd=tmp_path, env=ENV)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", expected), args

    view = run_flujo_after_upgrade(MODULE, "runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)
    assert view.returncode == 0, view.stderr
    section = json.loads(view.stdout)["sections"][OWNER]
    assert section["error"] == "StateOutdatedError: " + expected.removeprefix("error: ").strip()
    text = run_flujo_after_upgrade(MODULE, "runs", "show", run_id, cwd=tmp_path, env=ENV)
    assert text.returncode == 0, text.stderr
    assert expected.removeprefix("error: ").strip() in text.stdout

    upgraded = run_flujo_after_upgrade(MODULE, "state", "upgrade", cwd=tmp_path, env=ENV)
    assert upgraded.returncode == 0, upgraded.stderr
    listed = run_flujo_after_upgrade(MODULE, "evals", "list", "--json", cwd=tmp_path, env=ENV)
    assert listed.returncode == 0, listed.stderr
    assert [row["run_id"] for row in json.loads(listed.stdout)] == [run_id]


def test_tables_never_created_still_mean_nothing_recorded(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    (tmp_path / "flujo.toml").write_text(f'[state]\nuri = "{flujo_state_uri}"\n', encoding="utf-8")
    create_core_state(tmp_path / "flujo.toml")
    proc = run_flujo("evals", "list", "--json", cwd=tmp_path, env=ENV)
    assert (proc.returncode, json.loads(proc.stdout)) == (0, []), proc.stderr
