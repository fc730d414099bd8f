"""``flujo ui`` as a user runs it: a real uvicorn server in a child process on a loopback
port, the printed login link, and one-line errors (exit 2) when it cannot start."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ui_testkit import make_config, populate, write_pipes

from flujo.testing.cli import run_flujo

LINK = re.compile(r"flujo ui: (http://127\.0\.0\.1:(\d+))/login\?token=([\w-]+)")


def _env() -> dict[str, str]:
    # Only this package's plugin (and the core): the command comes from its entry point.
    return {**os.environ, "FLUJO_LOAD_PLUGINS": "flujo-ui"}


def start_server(folder: Path, *args: str) -> tuple[subprocess.Popen[str], str, str]:
    """``flujo ui --port 0 ...`` in ``folder``; its base URL and token, once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flujo", "ui", "--port", "0", *args],
        cwd=folder,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed after the socket listens
    found = LINK.search(line)
    if found is None:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"no login link in {line!r}; stderr: {err}")
    return proc, found.group(1), found.group(3)


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    config = make_config(tmp_path, "sqlite:///.flujo/flujo.db")
    asyncio.run(populate(config, write_pipes(tmp_path)))
    return tmp_path


@pytest.fixture
def server(folder: Path) -> Iterator[tuple[str, str]]:
    proc, base, token = start_server(folder)
    try:
        yield base, token
    finally:
        stop_server(proc)


def test_flujo_ui_serves_the_runs_and_logs_in_with_the_printed_token(
    server: tuple[str, str],
) -> None:
    base, token = server
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/runs")
        assert page.status_code == 200
        assert page.text.count('href="/runs/') == 4
        login = client.get(f"/login?token={token}")
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert client.get("/static/htmx.min.js").status_code == 200
        assert client.get("/static/uPlot.iife.min.js").status_code == 200


def test_no_state_database_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///.flujo/none.db"\n')
    done = run_flujo("ui", "--port", "0", cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": "flujo-ui"})
    assert done.returncode == 2
    assert "no state database" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".flujo" / "none.db").exists()


def test_taken_port_is_one_line_exit_2(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_flujo(
            "ui", "--port", str(port), cwd=folder, env={"FLUJO_LOAD_PLUGINS": "flujo-ui"}
        )
    assert done.returncode == 2
    assert f"--port {port}: cannot listen there (already in use)" in done.stderr
    assert "Traceback" not in done.stderr
