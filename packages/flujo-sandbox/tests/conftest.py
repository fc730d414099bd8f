"""Shared fixtures: the local sandbox, and a sidecar served on 127.0.0.1 (port 0) in a thread.

Tests that need bubblewrap skip with the reason locally and fail when ``CI=true`` (CI installs
bubblewrap in ``.ci/run``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flujo_sandbox.local import LocalSandbox, probe
from flujo_sandbox.remote import RemoteSandbox
from flujo_sandbox.server import SandboxServer, ServerConfig
from flujo_sandbox.settings import SandboxSettings

TOKEN = "test-token-0123456789"


def require_local() -> None:
    """Skip (locally) or fail (CI=true) when the local backend cannot run here."""
    report = probe(SandboxSettings(backend="local"))
    if not report.ok:
        reason = "local sandbox unavailable: " + "; ".join(report.problems)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


class ThreadedSidecar:
    """A :class:`SandboxServer` running on its own event loop in a background thread."""

    def __init__(self, sandbox: Any, config: ServerConfig) -> None:
        self.token = config.token
        self.loop = asyncio.new_event_loop()
        self.server = SandboxServer(sandbox, config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start("127.0.0.1", 0), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def local_sandbox() -> LocalSandbox:
    """A local sandbox with default settings (skips/fails without bubblewrap)."""
    require_local()
    return LocalSandbox(SandboxSettings(backend="local"))


@pytest.fixture(scope="session")
def sidecar() -> Iterator[ThreadedSidecar]:
    """One sidecar over a local backend for the session, requiring the bearer token."""
    require_local()
    side = ThreadedSidecar(
        LocalSandbox(SandboxSettings(backend="local")),
        ServerConfig(max_concurrency=8, token=TOKEN),
    )
    yield side
    side.close()


@pytest.fixture
def remote_sandbox(sidecar: ThreadedSidecar) -> RemoteSandbox:
    """A remote sandbox pointed at the session's sidecar."""
    return RemoteSandbox(
        SandboxSettings(backend="remote", api_url=sidecar.url), token=sidecar.token
    )


@pytest.fixture(params=["local", "remote"])
def box(request: pytest.FixtureRequest) -> Any:
    """Each real backend in turn: ``local`` directly, and ``remote`` through the sidecar."""
    if request.param == "local":
        return request.getfixturevalue("local_sandbox")
    return request.getfixturevalue("remote_sandbox")
