"""``flujo evals ...`` as users run it: a real subprocess, against a state database built here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, RunStatus, Step
from flujo.state import open_state
from flujo.testing.cli import read_table
from flujo.testing.fake_openai import FakeOpenAIServer, openai_env
from flujo_evals import storage
from flujo_evals.sampling import is_sampled


def answer(text: str) -> str:
    if "fail" in text:
        raise ValueError("boom")
    return text.upper()


PIPELINE = Pipeline([Step.from_callable(answer, name="answer")], name="shout")


def flujo(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flujo ARGS`` in ``cwd`` with no FLUJO_* variables from the outside."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLUJO", "OPENAI"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flujo", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _runs(config: FlujoConfig, inputs: list[str]) -> list[Any]:
    async with Flujo(PIPELINE, config=config) as runner:
        return [await runner.run_async(text) for text in inputs]


def _row(
    run_id: str, evaluator: str, status: str, score: float | None, weight: float
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "run_id": run_id,
        "step": storage.FINAL_OUTPUT,
        "evaluator": evaluator,
        "rubric_hash": "h",
        "judge_model": "openai:gpt-4o-mini" if evaluator == "judge" else None,
        "status": status,
        "score": score,
        "label": None if score is None else ("good" if score >= 0.5 else "bad"),
        "reasoning": "because",
        "sample_weight": weight,
        "tokens": 15,
        "cost_usd": 0.001,
        "latency_ms": 12.0,
        "attempts": 1,
        "billable": 1,
        "created_at": time.time(),
    }


@pytest.fixture
async def populated(make_config: Any, tmp_path: Path) -> dict[str, Any]:
    """Four runs and hand-made evaluations with known weights, in tmp_path's state."""
    config = make_config("[eval]\nenabled = false\n")
    results = await _runs(config, ["a", "b", "c", "fail d"])
    ids = [r.run_id for r in results]
    rows = [
        _row(ids[0], "judge", "scored", 1.0, 10.0),
        _row(ids[1], "judge", "scored", 0.0, 1.0),
        _row(ids[2], "judge", "judge_error", None, 10.0),
        _row(ids[3], "judge", "skipped_budget", None, 1.0),
        _row(ids[0], "regex", "scored", 0.5, 1.0),
        _row(ids[3], "regex", "scored", 0.7, 1.0),
    ]
    state = await open_state(config)
    try:
        for row in rows:
            assert await storage.write_row(state, row) == 1
    finally:
        await state.close()
    return {"ids": ids, "rows": rows}


def test_list_and_filters(populated: dict[str, Any], tmp_path: Path) -> None:
    proc = flujo("evals", "list", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert len(listed) == 6
    assert {r["pipeline"] for r in listed} == {"shout"}
    first = populated["ids"][0]
    proc = flujo("evals", "list", "--run", first, "--evaluator", "regex", "--json", cwd=tmp_path)
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [first]
    proc = flujo("evals", "list", "--since", "1h", "--limit", "2", cwd=tmp_path)
    assert proc.returncode == 0
    assert len(read_table(proc.stdout)) == 2
    proc = flujo("evals", "list", "--since", "2999-01-01", cwd=tmp_path)
    assert proc.stdout.strip() == "no evaluations"


def test_list_has_a_header_aligned_columns_and_utc_times(
    populated: dict[str, Any], tmp_path: Path
) -> None:
    proc = flujo("evals", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0].split() == [
        "ID", "CREATED", "RUN", "EVALUATOR", "STEP", "STATUS", "SCORE", "LABEL",
    ]  # fmt: skip
    rows = read_table(proc.stdout)
    assert len(rows) == 6
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["CREATED"]), row
    assert {r["SCORE"] for r in rows} == {"1.000", "0.000", "-", "0.500", "0.700"}
    assert {r["LABEL"] for r in rows} >= {"good", "bad", "-"}
    listed = json.loads(flujo("evals", "list", "--json", cwd=tmp_path).stdout)
    for item in listed:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", item["created_at"])
        assert "created_at_iso" not in item  # one timestamp, written one way


def test_show_rounds_for_people_and_json_keeps_the_number(make_config: Any, tmp_path: Path) -> None:
    config = make_config("[eval]\nenabled = false\n")
    [result] = asyncio.run(_runs(config, ["a"]))
    row = {**_row(result.run_id, "judge", "scored", 0.8, 1.0), "latency_ms": 211.1250499999926}
    row["reasoning"] = "fine\nreally \x1b[31mfine"

    async def write() -> None:
        state = await open_state(config)
        try:
            await storage.write_row(state, row)
        finally:
            await state.close()

    asyncio.run(write())
    shown = flujo("evals", "show", row["id"][:8], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["latency_ms"] == "211"
    assert lines["score"] == "0.800"
    assert lines["cost_usd"] == "0.001000"
    assert lines["judge_model"] == "openai:gpt-4o-mini"
    assert lines["label"] == "good"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines["created_at"])
    assert lines["reasoning"] == "fine really \\x1b[31mfine"
    assert "None" not in shown.stdout
    data = json.loads(flujo("evals", "show", row["id"][:8], "--json", cwd=tmp_path).stdout)
    assert data["latency_ms"] == 211.1250499999926
    assert data["created_at"][:19] + "Z" == lines["created_at"]


def test_show_by_id_prefix(populated: dict[str, Any], tmp_path: Path) -> None:
    wanted = populated["rows"][0]
    proc = flujo("evals", "show", wanted["id"][:12], "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["id"] == wanted["id"]
    assert shown["score"] == 1.0
    assert shown["pipeline"] == "shout"
    proc = flujo("evals", "show", wanted["id"], cwd=tmp_path)
    assert "reasoning      because" in proc.stdout
    proc = flujo("evals", "show", "ffffffffffff", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: no evaluation with id 'ffffffffffff'"


def test_summary_weighted_means(populated: dict[str, Any], tmp_path: Path) -> None:
    proc = flujo("evals", "summary", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    groups = {g["group"]: g for g in json.loads(proc.stdout)}
    judge, regex = groups["judge"], groups["regex"]
    assert judge["mean_score"] == pytest.approx(10 / 11)  # weighted: not the plain 0.5
    assert (judge["count"], judge["rows"], judge["failures"], judge["skipped"]) == (2, 4, 1, 1)
    assert judge["coverage"] == 0.5
    assert judge["estimated_runs"] == 11.0
    assert regex["mean_score"] == pytest.approx(0.6)
    assert regex["coverage"] == 1.0
    for by, key in [("pipeline", "shout"), ("step", "$output")]:
        proc = flujo("evals", "summary", "--group-by", by, "--json", cwd=tmp_path)
        (group,) = json.loads(proc.stdout)
        assert group["group"] == key
        assert group["mean_score"] == pytest.approx((10 * 1.0 + 0.0 + 0.5 + 0.7) / 13)
    proc = flujo("evals", "summary", "--group-by", "day", cwd=tmp_path)
    assert proc.returncode == 0
    assert time.strftime("%Y-%m-%d", time.gmtime()) in proc.stdout


def test_fail_below_is_a_ci_gate(populated: dict[str, Any], tmp_path: Path) -> None:
    proc = flujo("evals", "summary", "--fail-below", "0.8", cwd=tmp_path)
    assert proc.returncode == 1
    assert "regex" in proc.stdout
    assert "FAIL" in proc.stdout
    assert proc.stderr.strip() == "fail: mean score below 0.8 for regex (0.600)"
    assert flujo("evals", "summary", "--fail-below", "0.5", cwd=tmp_path).returncode == 0
    script = tmp_path / "gate.sh"
    script.write_text(
        f'"{sys.executable}" -m flujo evals summary --fail-below 0.95 >/dev/null 2>&1 '
        '|| { echo "quality gate failed"; exit 3; }\necho passed\n'
    )
    proc = subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert (proc.returncode, proc.stdout.strip()) == (3, "quality gate failed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--since", "yesterday"], "--since 'yesterday': expected a date"),
        (["summary", "--since", "3 parsecs"], "--since '3 parsecs': expected a date"),
        (["backfill", "--since", "soon"], "--since 'soon': expected a date"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = flujo("evals", *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text("[eval]\nsampling_rate = 2\n")
    proc = flujo("evals", "list", cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "sampling_rate" in proc.stderr


BACKFILL_TOML = (
    "[eval]\nenabled = false\nsampling_rate = 0.5\nsalt = 'bf'\n"
    "evaluators = ['regex', 'python']\nregex = '^[A-Z0-9 ]+$'\npython = 'cli_checks:score'\n"
)


async def test_backfill_is_idempotent(make_config: Any, tmp_path: Path) -> None:
    (tmp_path / "cli_checks.py").write_text(
        "def score(run):\n    return 1.0 if run.output else 0.0\n"
    )
    config = make_config(BACKFILL_TOML)
    results = await _runs(config, [f"hello {i}" for i in range(12)] + ["fail 1", "fail 2"])
    expected = {
        (r.run_id, name)
        for r in results
        for name in ("regex", "python")
        if r.status is RunStatus.FAILED or is_sampled("bf", r.run_id, name, 0.5)
    }
    proc = flujo("evals", "backfill", "--since", "1d", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs_to_do = len({run_id for run_id, _ in expected})
    assert f"dry run: {runs_to_do} runs, {len(expected)} evaluations (0 paid)" in proc.stdout
    assert json.loads(flujo("evals", "list", "--json", cwd=tmp_path).stdout) == []

    proc = flujo("evals", "backfill", "--since", "1d", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"backfilled {runs_to_do} runs: scored: {len(expected)}" in proc.stdout
    first = json.loads(flujo("evals", "list", "--json", "--limit", "1000", cwd=tmp_path).stdout)
    assert {(r["run_id"], r["evaluator"]) for r in first} == expected

    proc = flujo("evals", "backfill", "--since", "1d", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "backfilled 0 runs: nothing to do" in proc.stdout
    again = json.loads(flujo("evals", "list", "--json", "--limit", "1000", cwd=tmp_path).stdout)
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in first)


async def test_backfill_with_an_http_judge_stops_at_the_budget(
    make_config: Any, tmp_path: Path
) -> None:
    toml = (
        "[eval]\nsampling_rate = 1.0\nevaluate_on_failure = false\nevaluators = ['judge']\n"
        "judge_model = 'openai-chat:gpt-4o-mini'\njudge_input_usd_per_mtok = 100000.0\n"
    )
    config = make_config(toml)
    results = await _runs(config, [f"hello {i}" for i in range(5)])
    verdict = {"score": 0.8, "label": "good", "reasoning": "loud"}
    with FakeOpenAIServer([verdict] * 5) as server:  # 10 input tokens: $1.00 per evaluation
        env = openai_env(server)
        proc = flujo("evals", "backfill", "--since", "1d", "--dry-run", cwd=tmp_path, env=env)
        assert "5 evaluations (5 paid), estimated cost $0.0000" in proc.stdout
        proc = flujo(
            "evals", "backfill", "--since", "1d", "--budget-usd", "2.5", cwd=tmp_path, env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert "scored: 3; spent $3.0000; stopped: --budget-usd reached" in proc.stdout
        assert len(server.requests) == 3
        proc = flujo("evals", "backfill", "--since", "1d", "--dry-run", cwd=tmp_path, env=env)
        assert "2 runs, 2 evaluations (2 paid), estimated cost $2.0000" in proc.stdout
        proc = flujo("evals", "backfill", "--since", "1d", cwd=tmp_path, env=env)
        assert "backfilled 2 runs: scored: 2; spent $2.0000" in proc.stdout
    listed = json.loads(flujo("evals", "list", "--json", cwd=tmp_path).stdout)
    assert sorted(r["run_id"] for r in listed) == sorted(r.run_id for r in results)
    assert {r["cost_usd"] for r in listed} == {1.0}


def test_flujo_run_with_eval_then_summary(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///.flujo/flujo.db"\n'
        "[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ['regex']\nregex = '^[A-Z ]+$'\n"
    )
    (tmp_path / "shout.py").write_text(
        "from flujo import Pipeline, Step\n\n"
        "def shout(text: str) -> str:\n    return text.upper()\n\n"
        "pipeline = Pipeline([Step.from_callable(shout)], name='shout')\n"
    )
    proc = flujo("run", "shout.py:pipeline", "--input", "hello world", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = flujo("evals", "summary", "--json", "--fail-below", "0.9", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (group,) = json.loads(proc.stdout)
    assert (group["group"], group["mean_score"], group["count"]) == ("regex", 1.0, 1)


def test_flujo_run_with_a_missing_rubric_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        "[eval]\nenabled = true\nevaluators = ['judge']\nrubric = '@rubrics/none.md'\n"
    )
    (tmp_path / "shout.py").write_text(
        "from flujo import Pipeline, Step\n\n"
        "def shout(text: str) -> str:\n    return text.upper()\n\n"
        "pipeline = Pipeline([Step.from_callable(shout)], name='shout')\n"
    )
    proc = flujo("run", "shout.py:pipeline", "--input", "hello", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: [eval] rubric: file ")
    assert line.endswith("none.md' does not exist")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "args",
    [["list"], ["list", "--json"], ["show", "abc"], ["summary"], ["backfill", "--since", "1d"]],
)
def test_commands_never_create_a_state_database(tmp_path: Path, args: list[str]) -> None:
    proc = flujo("evals", *args, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: no state database at {tmp_path / '.flujo' / 'flujo.db'}\n",
    )
    assert _files(tmp_path) == []


def test_reading_a_database_made_before_the_plugin_creates_no_table(tmp_path: Path) -> None:
    """Read-only: `evals list` on a database without the evaluations table reports none and
    leaves the database as it was (the table comes with the next run or `flujo state
    upgrade`)."""
    from flujo.testing.state import create_core_state, sqlite_tables

    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///s.db"\n')
    create_core_state(tmp_path / "flujo.toml")
    before = sqlite_tables(tmp_path / "s.db")
    for args in (["list"], ["summary"]):
        proc = flujo("evals", *args, cwd=tmp_path)
        assert (proc.returncode, proc.stdout) == (0, "no evaluations\n"), proc.stderr
    assert flujo("evals", "list", "--json", cwd=tmp_path).stdout.strip() == "[]"
    assert sqlite_tables(tmp_path / "s.db") == before
