"""What the tests share: projects pointing at the dev server, waiting on stored runs,
counting side effects."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from flujo import Flujo
from flujo.config import FlujoConfig, load_config
from flujo.domain.models import RunRecord, RunStatus


async def wait_for_status(
    runner: Flujo, run_id: str, status: RunStatus, timeout_s: float = 60.0
) -> RunRecord:
    """The run once Flujo's state holds it in ``status`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = await runner.runtime.state.get_run(run_id)
        if run is not None and run.status is status:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} not {status.value} within {timeout_s} s: {run}")
        await asyncio.sleep(0.1)


def calls(root: Path) -> Counter[str]:
    """How many times each step noted it ran (``calls.log``, one line per execution)."""
    path = root / "calls.log"
    if not path.exists():
        return Counter()
    return Counter(path.read_text().split())


async def wait_for_calls(root: Path, *names: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(calls(root)[n] for n in names):
        if time.monotonic() > deadline:
            raise AssertionError(f"steps {names} did not run within {timeout_s} s: {calls(root)}")
        await asyncio.sleep(0.05)


async def wait_for_committed(
    runner: Flujo, run_id: str, *paths: str, timeout_s: float = 60.0
) -> None:
    """Until the inner steps at ``paths`` are committed, succeeded (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = await runner.runtime.state.get_run(run_id)
        done = (
            {s.path for s in run.inner_steps if s.result.status.value == "succeeded"}
            if run
            else set()
        )
        if set(paths) <= done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{paths} not committed within {timeout_s} s: {sorted(done)}")
        await asyncio.sleep(0.05)


@dataclass
class Project:
    """A folder with a flujo.toml pointing at the dev server, a task queue of its own."""

    root: Path
    address: str
    task_queue: str

    @property
    def toml(self) -> Path:
        return self.root / "flujo.toml"

    def config(self) -> FlujoConfig:
        return load_config(self.toml, environ=ENV)

    def write(self, name: str, source: str) -> str:
        """Write ``name`` (a pipeline module) and return the folder's absolute path."""
        (self.root / name).write_text(source)
        return str(self.root / name)


# Only this package's plugin loads: the tests pass with flujo-core and flujo-temporal alone.
ENV = {"FLUJO_LOAD_PLUGINS": "flujo-temporal"}


def project_toml(address: str, queue: str, state_uri: str = "sqlite:///runs.db") -> str:
    # Short leases and heartbeats: a killed worker is noticed in seconds.
    return (
        f'[state]\nuri = "{state_uri}"\nlease_s = 3\n\n'
        f'[engine]\nkind = "temporal"\n\n'
        f'[temporal]\naddress = "{address}"\ntask_queue = "{queue}"\n'
        "heartbeat_timeout_s = 3\nretry_initial_s = 0.2\nretry_max_s = 1\n"
    )


def start_worker(root: Path) -> subprocess.Popen[bytes]:
    """``flujo temporal worker`` in its own process group (so it can be killed whole)."""
    return subprocess.Popen(
        [sys.executable, "-m", "flujo", "temporal", "worker"],
        cwd=root,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=(root / f"worker-{os.urandom(3).hex()}.log").open("w"),
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
