"""Pytest fixtures for tests that read a trace back from a real Arize Phoenix.

Import them into a ``conftest.py`` or a test module (``from flujo_otel.testing import
phoenix``); they need ``flujo-otel[test]`` (pytest, httpx). Phoenix pins many packages, so it
is never a test dependency: ``FLUJO_TEST_PHOENIX`` names its ``phoenix`` executable (``.ci/run``
installs it in a venv of its own). Without it the tests skip locally and fail in CI
(``CI=true``).

``phoenix``
    A ``phoenix serve`` on a free loopback port with a throwaway working folder, started once
    per session (it takes about a minute on a loaded machine): its base URL. Point
    ``[otel] endpoint`` at it.
``phoenix_spans(url, trace_id, expected)``
    The trace's spans from Phoenix's REST API, once it has ingested ``expected`` of them.

``start_phoenix``/``stop_phoenix`` do the same outside pytest (``scripts/phoenix_screenshot.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = [
    "INGEST_S",
    "PHOENIX_ENV",
    "STARTUP_S",
    "PhoenixError",
    "phoenix",
    "phoenix_spans",
    "start_phoenix",
    "stop_phoenix",
]

PHOENIX_ENV = "FLUJO_TEST_PHOENIX"
STARTUP_S = 300.0  # Phoenix migrates its SQLite database and loads its app on first start
"""How long Phoenix may take to answer ``/healthz``. The session's Phoenix starts inside the
first test's time: give that test ``pytest.mark.timeout(STARTUP_S + INGEST_S + ...)``."""
INGEST_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Phoenix test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on a free loopback port with a throwaway working folder: its URL."""
    exe = os.environ.get(PHOENIX_ENV, "")
    if not exe:
        _missing(f"{PHOENIX_ENV} is not set (path of a `phoenix` executable)")
    if shutil.which(exe) is None:
        _missing(f"{PHOENIX_ENV}={exe!r} is not an executable")
    try:
        proc, url = start_phoenix(exe, tmp_path_factory.mktemp("phoenix"))
    except PhoenixError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        stop_phoenix(proc)


class PhoenixError(RuntimeError):
    """Phoenix exited or did not start in time (with the end of its log)."""


def start_phoenix(exe: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``phoenix serve`` on free loopback ports in ``workdir``; wait until it answers.
    Returns the process and its URL (stop it with :func:`stop_phoenix`)."""
    port = _free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "phoenix.log").open("wb")
    proc = subprocess.Popen(
        [exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
    )
    log.close()  # the child holds its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            if proc.poll() is not None:
                raise PhoenixError(f"phoenix exited with {proc.returncode}:\n{_tail(workdir)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PhoenixError(f"phoenix not up after {STARTUP_S:.0f} s:\n{_tail(workdir)}")
            time.sleep(0.5)
    except BaseException:
        stop_phoenix(proc)
        raise


def stop_phoenix(proc: subprocess.Popen[bytes]) -> None:
    """Stop a Phoenix started by :func:`start_phoenix`."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def _tail(workdir: Path) -> str:
    return (workdir / "phoenix.log").read_text(errors="replace")[-3000:]


def phoenix_spans(url: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The spans of trace ``trace_id`` (32 hex digits) once Phoenix has ingested ``expected``
    of them (it ingests in the background); fails the test after :data:`INGEST_S`."""
    deadline = time.monotonic() + INGEST_S
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{url}/v1/projects/default/spans",
            params={"trace_id": trace_id, "limit": 1000},
            timeout=10.0,
        )
        if answer.status_code == 200:
            spans = answer.json()["data"]
            if len(spans) >= expected:
                return spans
        time.sleep(0.5)
    pytest.fail(f"Phoenix has {len(spans)} of the trace's {expected} spans after {INGEST_S} s")
