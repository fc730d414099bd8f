"""``flujo sandbox exec | serve | doctor`` as real subprocesses (``python -m flujo ...``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flujo.testing.cli import help_imports, run_flujo
from flujo_sandbox.local import LocalSandbox


def flujo(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flujo ARGS`` in ``cwd`` with no FLUJO_* variables from outside."""
    return run_flujo(*args, cwd=cwd, env=env, input=stdin)


def test_exec_from_stdin_and_file(tmp_path: Path, local_sandbox: LocalSandbox) -> None:
    proc = flujo("sandbox", "exec", "--backend", "local", "-", cwd=tmp_path, stdin="print(6*7)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42\n"
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    proc = flujo("sandbox", "exec", "--backend", "local", str(script), cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == "out\n" and "err" in proc.stderr


def test_exec_json_bash_and_timeout(tmp_path: Path, local_sandbox: LocalSandbox) -> None:
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "local"\n')
    proc = flujo("sandbox", "exec", "--lang", "bash", "--json", "-", cwd=tmp_path, stdin="echo hi")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stdout"] == "hi\n" and data["backend"] == "local"
    assert data["limits"]["network"] is False
    proc = flujo("sandbox", "exec", "--timeout", "1", "-", cwd=tmp_path, stdin="while 1: pass")
    assert proc.returncode == 124
    assert "timed out" in proc.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--backend", "local", "/no/such/file.py"], None, "cannot read"),
        (["--backend", "local", "--lang", "cobol", "-"], "x", "cobol"),
        (["--backend", "remote", "-"], "x", "api_url"),
        (["--backend", "local", "--timeout", "-1", "-"], "x", "--timeout"),
    ],
)
def test_exec_user_errors_are_one_line_exit_2(
    tmp_path: Path, args: list[str], stdin: str | None, message: str, local_sandbox: Any
) -> None:
    proc = flujo("sandbox", "exec", *args, cwd=tmp_path, stdin=stdin)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "nope"\n')
    proc = flujo("sandbox", "doctor", cwd=tmp_path)
    assert proc.returncode == 2 and "[sandbox]" in proc.stderr


def test_doctor(tmp_path: Path) -> None:
    proc = flujo("sandbox", "doctor", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["backends"]) == {"local", "remote", "docker", "e2b"}
    assert report["backends"]["remote"]["available"] is False
    proc = flujo("sandbox", "doctor", cwd=tmp_path)
    assert proc.returncode == 0 and "local" in proc.stdout


def test_serve_answers_and_stops_cleanly(tmp_path: Path, local_sandbox: LocalSandbox) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    clean["MY_TOKEN"] = "tok-123"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flujo",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--token-env",
            "MY_TOKEN",
            "--max-concurrency",
            "2",
        ],
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "serving local on http://127.0.0.1:" in line, line + (
            server.stderr.read() if server.poll() is not None else ""
        )
        url = line.split(" on ", 1)[1].split()[0]
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        denied = httpx.post(f"{url}/execute", json={"code": "print(1)"})
        assert denied.status_code == 401
        answer = httpx.post(
            f"{url}/execute",
            json={"code": "print(6*7)", "language": "python"},
            headers={"Authorization": "Bearer tok-123"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["stdout"] == "42\n"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""


def test_serve_refuses_a_missing_token(tmp_path: Path, local_sandbox: LocalSandbox) -> None:
    proc = flujo("sandbox", "serve", "--port", "0", "--token-env", "NOT_SET_ANYWHERE", cwd=tmp_path)
    assert proc.returncode == 2
    assert "NOT_SET_ANYWHERE" in proc.stderr


def test_serve_refuses_an_open_port_without_token(tmp_path: Path) -> None:
    proc = flujo("sandbox", "serve", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "without a bearer token" in proc.stderr


def test_plugins_lists_the_sandbox(tmp_path: Path) -> None:
    proc = flujo("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = {p["name"]: p for p in json.loads(proc.stdout)}.get("flujo-sandbox")
    if entry is None:
        pytest.skip("flujo-sandbox is not installed as a distribution")
    assert entry["status"] == "ok", entry["error"]
    assert entry["sections"] == ["sandbox"]


def test_help_lists_sandbox_without_importing_it(tmp_path: Path) -> None:
    out, imported = help_imports(["flujo_sandbox.cli"], cwd=tmp_path)
    assert "sandbox" in out
    assert imported == []


def test_exec_through_the_sidecar(tmp_path: Path, sidecar: Any) -> None:
    env = {"FLUJO__SANDBOX__API_URL": sidecar.url, "FLUJO_SANDBOX_TOKEN": sidecar.token}
    proc = flujo("sandbox", "exec", "--json", "-", cwd=tmp_path, env=env, stdin="print(6*7)")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stdout"] == "42\n" and data["backend"] == "remote(local)"
    proc = flujo(
        "sandbox",
        "exec",
        "-",
        cwd=tmp_path,
        env={**env, "FLUJO_SANDBOX_TOKEN": "bad"},
        stdin="print(1)",
    )
    assert proc.returncode == 1 and "bearer token" in proc.stderr
