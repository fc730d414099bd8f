"""The command line: `flujo run --engine temporal` against a `flujo temporal worker`, and the
one-line errors (an unknown engine lists every registered one; an unreachable server)."""

from __future__ import annotations

import json
import socket

from temporal_testkit import ENV, Project, project_toml, start_worker, stop

from flujo.testing.cli import run_flujo

PIPE = """
from flujo import Step

def double(n: int) -> int:
    return n * 2

pipeline = Step.from_callable(double) >> Step.from_callable(lambda n: n + 1, name="inc")
"""


def test_run_with_engine_temporal_against_a_worker(project: Project) -> None:
    project.write("pipe.py", PIPE)
    (project.root / "flujo.toml").write_text(
        project.toml.read_text().replace('kind = "temporal"', 'kind = "local"')
    )
    worker = start_worker(project.root)
    try:
        proc = run_flujo(
            "run", "pipe.py:pipeline", "--input", "20", "--engine", "temporal", "--json",
            cwd=project.root, env=ENV, timeout=120,
        )  # fmt: skip
    finally:
        stop(worker)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["status"], result["output"]) == ("succeeded", 41)
    shown = run_flujo("runs", "show", result["run_id"], "--json", cwd=project.root, env=ENV)
    assert [s["name"] for s in json.loads(shown.stdout)["steps"]] == ["double", "inc"]


def test_unknown_engine_lists_temporal_and_its_plugin(project: Project) -> None:
    project.write("pipe.py", PIPE)
    proc = run_flujo(
        "run", "pipe.py:pipeline", "--input", "1", "--engine", "temporl", cwd=project.root, env=ENV
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --engine: unknown engine 'temporl'; "
        "registered: local (flujo-core), temporal (flujo-temporal)"
    ]


def test_unreachable_server_is_one_line_and_stores_nothing(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    (root / "flujo.toml").write_text(
        project_toml(address, "q").replace("heartbeat", "connect_timeout_s = 3\nheartbeat")
    )
    (root / "pipe.py").write_text(PIPE)
    proc = run_flujo("run", "pipe.py:pipeline", "--input", "1", cwd=root, env=ENV)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: [temporal] address '{address}': cannot reach")
    listed = run_flujo("runs", "list", "--json", cwd=root, env=ENV)
    assert listed.stdout.strip() in ("", "[]"), listed  # no run stored (or no database at all)
