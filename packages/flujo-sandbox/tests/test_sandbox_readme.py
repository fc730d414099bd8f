"""Every ``flujo sandbox`` command the README shows runs as written, through the real CLI.

The commands are read from the README's ``console`` blocks (so the test cannot drift from
the documentation) and run with bash in a fresh folder with no ``flujo.toml``, as a new user
would, with ``flujo`` on ``PATH`` being this interpreter's ``python -m flujo``. The files the
examples name (``job.py``, ``script.sh``) are created first. Two changes are made, both
because this machine is shared: ``serve`` gets ``--port 0`` (8787 may be taken), and the
remote example is pointed at the port it actually got, with the token it printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flujo_sandbox.local import LocalSandbox

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass
class Example:
    command: str
    output: list[str] = field(default_factory=list)


def readme_examples() -> list[Example]:
    """The ``$ flujo ...`` commands of the README's console blocks, with the lines each shows
    as its output; ``[--json]`` (an optional flag) gives one example with and one without."""
    examples: list[Example] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        current: Example | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                command = re.sub(r"\s+#.*$", "", line[2:]).strip()
                current = Example(command)
                if "flujo sandbox " in command:
                    for variant in _optional_flags(command):
                        examples.append(Example(variant))
                    current = examples[-1]
            elif current is not None and line.strip():
                current.output.append(line)
    return examples


def _optional_flags(command: str) -> list[str]:
    match = re.search(r"\s\[(--[\w-]+)\]", command)
    if match is None:
        return [command]
    return [
        command[: match.start()] + command[match.end() :],
        command[: match.start()] + " " + match[1] + command[match.end() :],
    ]


def test_the_readme_shows_the_examples_this_test_runs() -> None:
    commands = [e.command for e in readme_examples()]
    assert "flujo sandbox exec --json job.py" in commands
    assert any(c.startswith("flujo sandbox serve") for c in commands)
    assert len(commands) >= 6, commands


@pytest.fixture
def shell(tmp_path: Path) -> dict[str, str]:
    """An environment where ``flujo`` is this interpreter's CLI, with no FLUJO_* settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "flujo"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m flujo "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text("print(6 * 7)\n", encoding="utf-8")
    (work / "script.sh").write_text("echo from bash\n", encoding="utf-8")
    return env


def _bash(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_readme_sandbox_examples_run_as_written(
    tmp_path: Path, shell: dict[str, str], local_sandbox: LocalSandbox
) -> None:
    work = tmp_path / "work"
    serve: Example | None = None
    remote: list[Example] = []
    ran = 0
    for example in readme_examples():
        if example.command.startswith("flujo sandbox serve"):
            serve = example
            continue
        if "--backend remote" in example.command:
            remote.append(example)
            continue
        proc = _bash(example.command, shell, work)
        assert proc.returncode == 0, (example.command, proc.stdout, proc.stderr)
        if example.output:
            assert proc.stdout.splitlines() == example.output, example.command
        if "--json" in example.command.split():
            data = json.loads(proc.stdout)
            if "exec" in example.command:
                assert data["exit_code"] == 0, data
                assert data["stdout"] == "42\n", data
        ran += 1
    assert ran >= 4
    assert serve is not None
    assert remote, "the README shows a remote example"
    _serve_then_remote(serve, remote, shell, work)


def _serve_then_remote(
    serve: Example, remote: list[Example], env: dict[str, str], work: Path
) -> None:
    proc = subprocess.Popen(
        ["bash", "-c", "exec " + serve.command + " --port 0"],
        env=env,
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _read_lines(proc, len(serve.output))
        assert len(lines) == len(serve.output), (lines, proc.stderr)
        for shown, got in zip(serve.output, lines, strict=True):
            # The README's placeholders: the port it was given, the token's tail ("3Kq...").
            pattern = re.escape(shown).replace("8787", r"\d+").replace(r"3Kq\.\.\.", r"\S+?")
            assert re.fullmatch(pattern, got), (shown, got)
        port = re.search(r":(\d+) ", lines[0])
        token = re.search(r"FLUJO_SANDBOX_TOKEN=(\S+?);", lines[1])
        assert port is not None, lines
        assert token is not None, lines
        for example in remote:
            command = example.command.replace(":8787", f":{port[1]}")
            run_env = {**env, "FLUJO_SANDBOX_TOKEN": token[1]}
            result = _bash(command, run_env, work)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            assert result.stdout == "42\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _read_lines(proc: subprocess.Popen[str], count: int, timeout_s: float = 60) -> list[str]:
    """The first ``count`` lines ``proc`` prints, waiting at most ``timeout_s`` in all."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []

    def read() -> None:
        while len(lines) < count:
            line = stdout.readline()
            if not line:
                return
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    return list(lines)
