"""``flujo sandbox exec | serve | doctor`` as real subprocesses (``python -m flujo ...``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
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
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr


def test_exec_json_bash_and_timeout(tmp_path: Path, local_sandbox: LocalSandbox) -> None:
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "local"\n')
    proc = flujo("sandbox", "exec", "--lang", "bash", "--json", "-", cwd=tmp_path, stdin="echo hi")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stdout"] == "hi\n"
    assert data["backend"] == "local"
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
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], proc.stderr


def test_no_backend_configured_uses_the_local_one_doctor_finds(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    """No flujo.toml: `auto` is the sandbox doctor says is available (bubblewrap, here)."""
    proc = flujo("sandbox", "exec", "--json", "-", cwd=tmp_path, stdin="print(6*7)")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "local"
    proc = flujo("sandbox", "doctor", cwd=tmp_path)
    assert "configured backend: auto (uses local)" in proc.stdout


def test_auto_prefers_the_configured_service(tmp_path: Path) -> None:
    """An api_url is the user's choice of a service: auto never swaps it for local."""
    (tmp_path / "flujo.toml").write_text('[sandbox]\napi_url = "http://127.0.0.1:9"\n')
    proc = flujo("sandbox", "exec", "--json", "-", cwd=tmp_path, stdin="print(1)")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "remote"
    assert "cannot reach the sandbox service at http://127.0.0.1:9" in proc.stdout


def test_auto_with_nothing_available_fails_closed_naming_the_choices(tmp_path: Path) -> None:
    # An interpreter that does not exist makes the local check fail as missing bubblewrap would.
    (tmp_path / "flujo.toml").write_text('[sandbox]\npython = "/no/such/python3"\n')
    proc = flujo("sandbox", "exec", "-", cwd=tmp_path, stdin="print(1)")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no sandbox can run here" in lines[0]
    assert "/no/such/python3" in lines[0]
    assert '[sandbox] backend = "remote"' in lines[0]
    assert "--backend" in lines[0]
    assert proc.stdout == ""
    proc = flujo("sandbox", "doctor", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "configured backend: auto (none available" in proc.stdout


def test_remote_without_url_names_the_local_backend_found(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    """Asked for remote: never silently run locally instead, but say how to choose local."""
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "remote"\n')
    proc = flujo("sandbox", "exec", "-", cwd=tmp_path, stdin="print(1)")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "[sandbox] backend remote needs [sandbox] api_url" in lines[0]
    assert "--backend local" in lines[0]
    assert '[sandbox] backend = "local"' in lines[0]


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "nope"\n')
    proc = flujo("sandbox", "doctor", cwd=tmp_path)
    assert proc.returncode == 2
    assert "[sandbox]" in proc.stderr


def test_doctor(tmp_path: Path) -> None:
    proc = flujo("sandbox", "doctor", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["backends"]) == {"local", "remote", "docker", "e2b"}
    assert report["backends"]["remote"]["available"] is False
    proc = flujo("sandbox", "doctor", cwd=tmp_path)
    assert proc.returncode == 0
    assert "local" in proc.stdout


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
        assert answer.status_code == 200
        assert answer.json()["stdout"] == "42\n"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""


def test_serve_refuses_a_missing_token(tmp_path: Path, local_sandbox: LocalSandbox) -> None:
    proc = flujo("sandbox", "serve", "--port", "0", "--token-env", "NOT_SET_ANYWHERE", cwd=tmp_path)
    assert proc.returncode == 2
    assert "NOT_SET_ANYWHERE" in proc.stderr


def test_serve_refuses_an_open_port_without_token(tmp_path: Path) -> None:
    proc = flujo("sandbox", "serve", "--host", "0.0.0.0", "--port", "0", "--no-token", cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing --no-token on 0.0.0.0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-token", "--token-env", "X"], "contradict"),
        (["--allow-origin", "evil.example"], "--allow-origin"),
        (["--max-concurrency", "8", "--max-connections", "2"], "--max-connections"),
        (["--token-env", "SPACEY"], "printable ASCII"),
        (["--port", "70000"], "--port 70000"),
        (["--token-env", "BLANK"], "not set or empty"),
    ],
)
def test_serve_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    env = {"X": "t", "SPACEY": "two words", "BLANK": " \n"}
    if "--port" not in args:
        args = ["--port", "0", *args]
    proc = flujo("sandbox", "serve", *args, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], proc.stderr


class Served:
    """``flujo sandbox serve`` running as a real subprocess; stopped with SIGTERM."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flujo", "sandbox", "serve", "--port", "0", *args],
            cwd=tmp_path,
            env={**clean, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " on http://" not in line:
            self.stop()
            raise AssertionError(f"serve did not start: {line!r} {self.stderr}")
        self.first_line = line
        self.url = line.split(" on ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode


def test_serve_generates_and_prints_a_token_by_default(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    served = Served(tmp_path)
    try:
        assert "bearer token required" in served.first_line
        notice = served.readline()
        assert notice.startswith("generated bearer token (callers set FLUJO_SANDBOX_TOKEN=")
        token = notice.split("FLUJO_SANDBOX_TOKEN=", 1)[1].split(";", 1)[0]
        assert len(token) >= 32
        denied = httpx.post(f"{served.url}/execute", json={"code": "print(1)"})
        assert denied.status_code == 401
        # The documented client side: the variable [sandbox] token_env names.
        proc = flujo(
            "sandbox",
            "exec",
            "-",
            cwd=tmp_path,
            env={"FLUJO__SANDBOX__API_URL": served.url, "FLUJO_SANDBOX_TOKEN": token},
            stdin="print(6*7)",
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "42\n"
    finally:
        assert served.stop() == 0, served.stderr
    assert token not in served.stderr


def test_serve_without_a_token_only_when_asked_and_loudly(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    served = Served(tmp_path, "--no-token")
    try:
        assert "NO TOKEN" in served.first_line
        answer = httpx.post(f"{served.url}/execute", json={"code": "print(6*7)"}, timeout=60)
        assert answer.status_code == 200
        assert answer.json()["stdout"] == "42\n"
        # Still no web page: a browser's cross-origin request carries an Origin.
        page = httpx.post(
            f"{served.url}/execute",
            json={"code": "print(1)"},
            headers={"Origin": "http://evil.example"},
        )
        assert page.status_code == 403
    finally:
        assert served.stop() == 0
    assert "WARNING: --no-token" in served.stderr


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def test_clients_without_the_token_cannot_grow_the_servers_memory(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    """16 clients without a token each declare and push a 32 MiB body (the issue's attack:
    it raised the server from 40 MB to 536 MB). The server answers 401 from the headers and
    never buffers a body: its peak RSS (VmHWM) grows by far less than one body."""
    served = Served(tmp_path, "--token-env", "MY_TOKEN", env={"MY_TOKEN": "tok-123"})
    body = 32 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)
    answers: list[bytes] = []

    def attack() -> None:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            sock.sendall(
                b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n" + f"Content-Length: {body}\r\n\r\n".encode()
            )
            try:
                for _ in range(body // len(chunk)):
                    sock.sendall(chunk)
            except OSError:
                pass  # refused and closed before the body was through: what we want
            try:
                answers.append(sock.recv(4096))
            except OSError:
                answers.append(b"")

    try:
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        before = _vm_kib(served.proc.pid, "VmHWM")
        threads = [threading.Thread(target=attack) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        peak = _vm_kib(served.proc.pid, "VmHWM")
        # Still serving, and the right caller still gets in.
        ok = httpx.post(
            f"{served.url}/execute",
            json={"code": "print(6*7)"},
            headers={"Authorization": "Bearer tok-123"},
            timeout=60,
        )
        assert ok.status_code == 200
        assert ok.json()["stdout"] == "42\n"
    finally:
        assert served.stop() == 0, served.stderr
    growth_mib = (peak - before) / 1024
    print(f"server peak RSS {before / 1024:.1f} MiB -> {peak / 1024:.1f} MiB")
    assert growth_mib < 24, f"peak RSS grew by {growth_mib:.0f} MiB"
    # Those that read an answer read a 401 (a client still pushing may see a reset instead).
    assert all(a == b"" or a.startswith(b"HTTP/1.1 401") for a in answers), answers
    assert any(a.startswith(b"HTTP/1.1 401") for a in answers)


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
    assert data["stdout"] == "42\n"
    assert data["backend"] == "remote(local)"
    proc = flujo(
        "sandbox",
        "exec",
        "-",
        cwd=tmp_path,
        env={**env, "FLUJO_SANDBOX_TOKEN": "bad"},
        stdin="print(1)",
    )
    # A wrong token is a configuration error: one line naming the variable, exit 2.
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "bearer token" in lines[0]
    assert "FLUJO_SANDBOX_TOKEN" in lines[0]


ACME = """
from flujo import hookimpl
from flujo.domain.interfaces import ExecutionResult


class AcmeBox:
    def __init__(self, config):
        self.config = config

    async def exec_code(self, code, lang="python", **kwargs):
        return ExecutionResult(stdout="acme ran " + code, stderr="", exit_code=0, backend="acme")


@hookimpl
def flujo_register_sandboxes(register):
    register("acme.box", AcmeBox)
"""


def _install_acme(site: Path) -> dict[str, str]:
    """A third-party distribution registering sandbox ``acme.box``, as pip would install it."""
    site.mkdir()
    (site / "acme_box.py").write_text(ACME)
    info = site / "acme_box-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-box\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[flujo.plugins]\nacme_box = acme_box\n")
    return {
        "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
        "FLUJO_LOAD_PLUGINS": "acme-box,flujo-sandbox",
    }


def test_exec_and_config_accept_another_plugins_sandbox(tmp_path: Path) -> None:
    env = _install_acme(tmp_path / "site")
    proc = flujo("sandbox", "exec", "--backend", "acme.box", "-", cwd=tmp_path, env=env, stdin="x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "acme ran x"
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "acme.box"\n')
    proc = flujo("sandbox", "exec", "-", cwd=tmp_path, env=env, stdin="y")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "acme ran y", proc.stderr
    proc = flujo("sandbox", "exec", "--backend", "acme.bx", "-", cwd=tmp_path, env=env, stdin="z")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --backend: unknown sandbox 'acme.bx'; registered: acme.box (acme-box), "
        "docker (flujo-sandbox), e2b (flujo-sandbox), local (flujo-sandbox), "
        "remote (flujo-sandbox)"
    ]
