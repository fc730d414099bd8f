"""Output for people: listings have a header and aligned columns, timestamps are written one
way (UTC ISO-8601 with Z; seconds for people, microseconds in JSON), outside text cannot
break a table or reach the terminal as escape sequences. Through the real command."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from flujo.cli._output import table_lines
from flujo.domain.formatting import human_time, json_time, printable
from flujo.testing.cli import read_table, run_flujo

PIPE = """
from flujo import Step

def ok(text: str) -> str:
    return text

def bad(text: str) -> str:
    raise RuntimeError("broke\\x1b[2J\\nbadly")

pipeline = Step.from_callable(ok)
failing = Step.from_callable(bad, name="a-much-longer-step-name")
"""

ENV = {"FLUJO_LOAD_PLUGINS": ""}
HUMAN = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
JSON = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(PIPE)
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    for target in ("pipe.py:pipeline", "pipe.py:failing", "pipe.py:pipeline"):
        run_flujo("run", target, "--input", "x", "-q", cwd=tmp_path, env=ENV)
    return tmp_path


def test_runs_list_has_a_header_aligned_columns_and_utc_times(project: Path) -> None:
    proc = run_flujo("runs", "list", cwd=project, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["RUN", "CREATED", "STATUS", "PIPELINE", "ERROR"]
    rows = read_table(proc.stdout)
    assert [r["STATUS"] for r in rows] == ["succeeded", "failed", "succeeded"]
    for row in rows:
        assert re.fullmatch(HUMAN, row["CREATED"]), row
        assert re.fullmatch(r"[0-9a-f]{32}", row["RUN"])
    assert rows[0]["ERROR"] == "-"
    # The step's error is outside text: one line, its escape sequence shown, not sent.
    assert "\x1b" not in proc.stdout
    assert rows[1]["ERROR"].endswith("RuntimeError: broke\\x1b[2J badly")


def test_json_times_are_utc_with_z_to_the_microsecond(project: Path) -> None:
    proc = run_flujo("runs", "list", "--json", cwd=project, env=ENV)
    listed = json.loads(proc.stdout)
    human = read_table(run_flujo("runs", "list", cwd=project, env=ENV).stdout)
    for run, row in zip(listed, human, strict=True):
        assert re.fullmatch(JSON, run["created_at"]), run
        assert re.fullmatch(JSON, run["updated_at"]), run
        # The same instant: the people's form is the JSON one cut to the second.
        assert run["created_at"][:19] + "Z" == row["CREATED"]


def test_the_helpers_write_one_form() -> None:
    ts = dt.datetime(2025, 1, 31, 12, 0, 5, 123456, tzinfo=dt.UTC).timestamp()
    assert human_time(ts) == "2025-01-31T12:00:05Z"
    assert json_time(ts) == "2025-01-31T12:00:05.123456Z"
    assert human_time(None) == "-"
    assert printable(None) == "-"
    assert printable("a\u202eb\x07\n c", 40) == "a\\u202eb\\x07 c"
    assert printable("x" * 10, 6) == "xxx..."
    lines = table_lines(("NAME", "N"), [("a", 1), ("longer", None)], right=(1,))
    assert lines == ["NAME    N", "a       1", "longer  -"]
