"""Step progress of ``flujo run`` and ``flujo runs resume``, through the real command.

Not a terminal (a pipe): one plain line per step start and end on stderr, stdout untouched.
A terminal (a real pseudo-terminal from ``pty.openpty()``): the running step's line is
redrawn in place and ends as one final line per step. ``--quiet``: no progress at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from flujo.testing.cli import run_flujo

PIPE = """
import os, pathlib
from flujo import Step

def fetch(text: str) -> str:
    gate = os.environ.get("GATE")
    if gate:  # wait for the test to have seen this step running (bounded)
        for _ in range(6000):
            if pathlib.Path(gate).exists():
                break
            __import__("time").sleep(0.01)
    return text + "!"

def answer(text: str) -> str:
    if pathlib.Path("fail-once").exists():
        pathlib.Path("fail-once").unlink()
        raise RuntimeError("flaky\\x1b]0;pwned\\x07 service")
    return "re: " + text

pipeline = Step.from_callable(fetch) >> Step.from_callable(answer)
"""

ENV = {"FLUJO_LOAD_PLUGINS": ""}
ELAPSED = r"\d+\.\ds"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(PIPE)
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    return tmp_path


def test_plain_lines_on_stderr_when_not_a_terminal(project: Path) -> None:
    proc = run_flujo("run", "pipe.py:pipeline", "--input", "hi", cwd=project, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "re: hi!\n"
    lines = proc.stderr.splitlines()
    assert len(lines) == 5, proc.stderr
    assert lines[0] == "[1/2] fetch started"
    assert re.fullmatch(rf"\[1/2\] fetch succeeded in {ELAPSED}", lines[1])
    assert lines[2] == "[2/2] answer started"
    assert re.fullmatch(rf"\[2/2\] answer succeeded in {ELAPSED}", lines[3])
    assert re.fullmatch(r"run [0-9a-f]{32}: succeeded", lines[4])


def test_json_stdout_is_unchanged_and_quiet_turns_progress_off(project: Path) -> None:
    proc = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "--json", cwd=project, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"] == "re: hi!"
    assert "[2/2] answer started" in proc.stderr
    quiet = run_flujo(
        "run", "pipe.py:pipeline", "--input", "hi", "--json", "--quiet", cwd=project, env=ENV
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["output"] == "re: hi!"
    short = run_flujo("run", "pipe.py:pipeline", "--input", "hi", "-q", cwd=project, env=ENV)
    assert short.stdout == "re: hi!\n"
    assert "[1/2]" not in short.stderr


def test_resume_shows_the_steps_it_runs_and_a_failure_safely(project: Path) -> None:
    (project / "fail-once").write_text("")
    failed = run_flujo("run", "pipe.py:pipeline", "--input", "hi", cwd=project, env=ENV)
    assert failed.returncode == 1
    line = next(x for x in failed.stderr.splitlines() if x.startswith("[2/2] answer failed"))
    # The error comes from outside: its escape sequences are shown, never sent to a terminal.
    assert "\x1b" not in line
    assert "\x07" not in line
    assert re.fullmatch(
        rf"\[2/2\] answer failed in {ELAPSED}: RuntimeError: flaky\\x1b\]0;pwned\\x07 service",
        line,
    )
    run_id = re.search(r"run ([0-9a-f]{32})", failed.stderr)
    assert run_id is not None
    resumed = run_flujo("runs", "resume", run_id[1], cwd=project, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "re: hi!\n"
    lines = resumed.stderr.splitlines()
    assert lines[0] == "[2/2] answer started", resumed.stderr
    assert re.fullmatch(rf"\[2/2\] answer succeeded in {ELAPSED}", lines[1])
    assert "fetch" not in resumed.stderr  # the finished step is not run again
    quiet = run_flujo("runs", "resume", run_id[1], "--quiet", cwd=project, env=ENV)
    assert "[" not in quiet.stderr


def _terminal_text(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: each ``\\r`` returns to the line's start and
    ``ESC [K`` erases the rest, so only the last drawing of a line remains."""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        shown = line.split("\r")[-1].replace("\x1b[K", "")
        if shown:
            lines.append(shown)
    return lines


@pytest.mark.parametrize("columns", [0, 16])
def test_live_progress_on_a_terminal_ends_in_one_line_per_step(project: Path, columns: int) -> None:
    """``columns``: 0 is a terminal that never said its size; 16 is narrower than the line,
    which is then cut to fit (a wrapped line could not be redrawn in place)."""
    gate = project / "gate"
    leader, follower = pty.openpty()
    if columns:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flujo", "run", "pipe.py:pipeline", "--input", "hi"],
        cwd=project,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("FLUJO")},
            **ENV,
            "GATE": str(gate),
            "TERM": "xterm",
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    seen_running = threading.Event()

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)
            if b"".join(chunks).count(b"\r\x1b[K[1/2] fetch") >= 2:
                seen_running.set()  # drawn, then redrawn in place, while the step runs

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen_running.wait(60), b"".join(chunks)
        gate.write_text("")
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        os.close(leader)
    assert proc.returncode == 0
    assert stdout == "re: hi!\n"
    raw = b"".join(chunks).decode()
    drawn = [d for d in raw.replace("\r\n", "\n").split("\r\x1b[K") if "\n" not in d and d]
    running = [d for d in drawn if d.startswith("[1/2] fetch")]
    assert len(running) >= 2, raw  # redrawn in place
    if columns:
        assert all(len(d) < columns for d in drawn), drawn
    else:
        assert re.fullmatch(rf"\[1/2\] fetch running {ELAPSED}", running[0]), running
    shown = _terminal_text(raw)
    assert len(shown) == 3, shown
    assert re.fullmatch(rf"\[1/2\] fetch succeeded in {ELAPSED}", shown[0])
    assert re.fullmatch(rf"\[2/2\] answer succeeded in {ELAPSED}", shown[1])
    assert re.fullmatch(r"run [0-9a-f]{32}: succeeded", shown[2])


NESTED = """
from flujo import Step

def web(text: str) -> str:
    return text + " web"

def docs(text: str) -> str:
    return text + " docs"

def join(found: dict) -> str:
    return found["web"] + " / " + found["docs"]

pipeline = Step.parallel(
    "research", {"web": Step.from_callable(web), "docs": Step.from_callable(docs)}
) >> Step.from_callable(join)
"""


def test_steps_inside_a_control_flow_step_are_shown_by_path(project: Path) -> None:
    (project / "nested.py").write_text(NESTED)
    proc = run_flujo("run", "nested.py:pipeline", "--input", "q", cwd=project, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "q web / q docs\n"
    lines = proc.stderr.splitlines()[:-1]  # the last is the run's own line
    started = [x.removesuffix(" started") for x in lines if x.endswith(" started")]
    finished = [re.sub(rf" succeeded in {ELAPSED}$", "", x) for x in lines if "succeeded" in x]
    assert sorted(started) == sorted(finished), proc.stderr  # each start has its end
    assert started[0] == "[1/2] research"
    assert {"[1/2] research/web/web", "[1/2] research/docs/docs"} <= set(started)
    assert finished.index("[1/2] research") > finished.index("[1/2] research/web/web")
    assert started[-1] == finished[-1] == "[2/2] join"
