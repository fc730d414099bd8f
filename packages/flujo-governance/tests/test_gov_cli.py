"""``flujo governance scrub`` and ``flujo governance audit``, and the plugin as ``flujo plugins``
sees it, run as real subprocesses against the installed package."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from flujo import Flujo, Pipeline, Step
from flujo.config import load_config
from flujo.testing.cli import read_table, run_flujo

DIST = "flujo-governance"


def _require_installed() -> None:
    try:
        distribution(DIST)
    except PackageNotFoundError:
        reason = f"{DIST} is not installed (pip install -e packages/flujo-governance)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def flujo(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    _require_installed()
    return run_flujo(*args, cwd=cwd, input=stdin)


def test_plugins_lists_governance(tmp_path: Path) -> None:
    proc = flujo("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = {e["name"]: e for e in json.loads(proc.stdout)}[DIST]
    assert entry["status"] == "ok", entry["error"]
    assert entry["registered"] == {"policies": ["pii", "tool_allowlist"]}
    assert entry["sections"] == ["governance"]


def test_scrub_jsonl_keeps_other_fields_and_order(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "text": "mail ana@example.com", "lang": "en"},
        {"id": 2, "text": "order A-1001 on 2024-01-15 for $12.50"},
        {"id": 3, "text": "card 4111 1111 1111 1111, again ana@example.com"},
    ]
    stdin = "\n".join(json.dumps(line) for line in lines) + "\n"
    proc = flujo("governance", "scrub", cwd=tmp_path, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert out == [
        {"id": 1, "text": "mail <EMAIL>", "lang": "en"},
        {"id": 2, "text": "order A-1001 on 2024-01-15 for $12.50"},
        {"id": 3, "text": "card <CREDIT_CARD>, again <EMAIL>"},
    ]
    proc = flujo("governance", "scrub", "--mode", "pseudonymize", cwd=tmp_path, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    texts = [json.loads(line)["text"] for line in proc.stdout.splitlines()]
    assert texts[0] == "mail <EMAIL_1>"
    assert texts[2] == "card <CREDIT_CARD_1>, again <EMAIL_1>"


def test_scrub_plain_text(tmp_path: Path) -> None:
    stdin = 'Call +44 20 7946 0958.\n{"not": "text field"}\npassword=hunter22\n'
    proc = flujo("governance", "scrub", cwd=tmp_path, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'Call <PHONE>.\n{"not": "text field"}\npassword=<SECRET>\n'


def test_scrub_uses_custom_patterns_from_config(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        '[governance.pii]\nentities = ["EMAIL"]\n'
        '[[governance.pii.patterns]]\nname = "EMPLOYEE_ID"\nregex = "EMP-\\\\d{6}"\n'
    )
    proc = flujo("governance", "scrub", cwd=tmp_path, stdin="EMP-123456 a@b.io 4111 1111 1111 1111")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "<EMPLOYEE_ID> <EMAIL> 4111 1111 1111 1111"


def test_audit_command(tmp_path: Path) -> None:
    _require_installed()
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///flujo.db"\n[governance]\npolicies = ["pii"]\n'
    )

    def echo(text: str) -> str:
        return text

    async def run() -> str:
        config = load_config(tmp_path / "flujo.toml", environ={"FLUJO_LOAD_PLUGINS": DIST})
        async with Flujo(Pipeline([Step.from_callable(echo)]), config=config) as runner:
            await runner.run_async("hello")
            result = await runner.run_async("mail ana@example.com or bob@example.com")
        return result.run_id

    run_id = asyncio.run(run())
    proc = flujo("governance", "audit", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["run_id"], r["step"], r["policy"], r["decision"]) for r in rows] == [
        (run_id, "echo", "pii", "redact")
    ]
    assert rows[0]["entities"] == {"EMAIL": 2}
    assert "example.com" not in proc.stdout
    # An id that names no run is an error, not an empty listing that reads as "no decisions".
    proc = flujo("governance", "audit", "--run", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: no run with id 'nope' (run ids are hexadecimal)"
    proc = flujo("governance", "audit", "--run", run_id[:12], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert run_id in proc.stdout
    proc = flujo("governance", "audit", "--run", run_id, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0].split() == [
        "TIME", "RUN", "STEP", "POLICY", "STAGE", "TOOL", "DECISION", "RULE", "ENTITIES", "BY",
    ]  # fmt: skip
    [row] = read_table(proc.stdout)
    assert row["ENTITIES"] == "EMAIL:2"
    assert row["DECISION"] == "redact"
    assert row["TOOL"] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["TIME"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rows[0]["created_at"])
    assert rows[0]["created_at"][:19] + "Z" == row["TIME"]


def test_plugin_module_is_cheap_to_import() -> None:
    code = (
        "import sys\nimport flujo_governance.plugin\n"
        "heavy = [m for m in ('click', 'pydantic', 'flujo_governance.pii', "
        "'flujo_governance.engines.regex', 'flujo_governance.commands', 'presidio_analyzer') "
        "if m in sys.modules]\nprint(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"plugin.py imported {out} at import time"


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("presidio_analyzer", "spacy")),
    reason="the presidio extra is not installed (pip install 'flujo-governance[presidio]')",
)
def test_scrub_with_presidio(tmp_path: Path) -> None:
    proc = flujo("governance", "scrub", "--engine", "presidio", cwd=tmp_path, stdin="to a@b.io")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "to <EMAIL>"


PIPE = """
import logging

from flujo import Pipeline, Step

CARD = "4111 1111 1111 1111"
EMAIL = "ana@example.com"


def charge(text: str) -> str:
    logging.getLogger("pipe").error("charging %s for %s", CARD, EMAIL)
    raise RuntimeError(f"could not charge {CARD} for {EMAIL}")


def greet(text: str) -> str:
    return f"{text}, your card {CARD} is on file"


failing = Pipeline([Step.from_callable(charge, name="charge")])
greeting = Pipeline([Step.from_callable(greet, name="greet")])
"""


@pytest.mark.parametrize("mode", ["redact", "pseudonymize"])
def test_flujo_run_never_prints_raw_pii_but_returns_the_restored_output(
    tmp_path: Path, mode: str
) -> None:
    """What ``flujo run`` prints about a failed step (stderr, ``--json``) is scrubbed like the
    stored copy; only the final output of a successful run comes back restored."""
    _require_installed()
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///flujo.db"\n[governance]\npolicies = ["pii"]\n'
        f'[governance.pii]\nmode = "{mode}"\n',
        encoding="utf-8",
    )
    (tmp_path / "pipe.py").write_text(PIPE, encoding="utf-8")
    env = {"FLUJO_LOAD_PLUGINS": DIST}
    raw = ["4111 1111 1111 1111", "4111111111111111", "ana@example.com"]
    for args in (["--input", "go"], ["--input", "go", "--json"]):
        proc = run_flujo("run", "pipe.py:failing", *args, cwd=tmp_path, env=env)
        assert proc.returncode == 1, proc.stderr
        assert "could not charge" in proc.stderr + proc.stdout  # the error is reported...
        for value in raw:  # ...scrubbed
            assert value not in proc.stderr, f"{value!r} on stderr: {proc.stderr}"
            assert value not in proc.stdout, f"{value!r} on stdout: {proc.stdout}"
    done = run_flujo(
        "run", "pipe.py:greeting", "--input", "Hi ana@example.com", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    restored = "Hi ana@example.com, your card 4111 1111 1111 1111 is on file"
    if mode == "pseudonymize":
        assert done.stdout.strip() == restored
    else:
        assert done.stdout.strip() == "Hi <EMAIL>, your card 4111 1111 1111 1111 is on file"
    for value in raw:
        assert value not in done.stderr


def test_audit_never_creates_a_state_database(tmp_path: Path) -> None:
    proc = flujo("governance", "audit", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: no state database at {tmp_path / '.flujo' / 'flujo.db'}\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_audit_of_a_database_made_before_the_plugin_changes_nothing(tmp_path: Path) -> None:
    from flujo.testing.state import create_core_state, sqlite_tables

    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///s.db"\n')
    create_core_state(tmp_path / "flujo.toml")
    before = sqlite_tables(tmp_path / "s.db")
    proc = flujo("governance", "audit", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "no policy decisions recorded\n"), proc.stderr
    assert sqlite_tables(tmp_path / "s.db") == before
