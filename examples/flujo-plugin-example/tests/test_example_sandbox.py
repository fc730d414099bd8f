"""``example_bwrap`` passes Flujo's sandbox conformance suite (real bubblewrap, nothing mocked),
and enforces or refuses each limit it is given."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flujo.config import load_config
from flujo.plugin import SandboxLimits
from flujo.plugins.manager import PluginManager
from flujo.testing.conformance import SandboxConformance

import flujo_plugin_example.plugin
from flujo_plugin_example.sandbox import BwrapSandbox, ExampleSandboxError

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


class TestBwrapSandbox(SandboxConformance):
    @pytest.fixture
    def sandbox(self) -> Any:
        return BwrapSandbox()


class TestBwrapSandboxFromConfig(SandboxConformance):
    @pytest.fixture
    def sandbox(self, tmp_path: Path) -> Any:
        (tmp_path / "flujo.toml").write_text("", encoding="utf-8")
        pm = PluginManager()
        info = pm.register(flujo_plugin_example.plugin, "flujo-plugin-example")
        assert info.status == "ok", info.error
        config = load_config(tmp_path / "flujo.toml", plugin_manager=pm, environ={})
        return pm.registry.create("sandboxes", "example_bwrap", config)


NET = "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('reached')"


async def test_no_network_unless_asked() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        cut = await BwrapSandbox().exec_code(NET.format(port=port), timeout_s=20)
        assert not cut.ok
        assert "reached" not in cut.stdout
        net = await BwrapSandbox().exec_code(
            NET.format(port=port), timeout_s=20, limits=SandboxLimits(network=True)
        )
        assert net.ok, net.stderr
        assert "reached" in net.stdout


async def test_memory_limit_is_enforced() -> None:
    code = "b = bytearray(512 * 1024 * 1024)\nprint('allocated')"
    result = await BwrapSandbox().exec_code(code, timeout_s=30, limits=SandboxLimits(memory_mb=128))
    assert not result.ok
    assert "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


async def test_cpu_limit_is_enforced() -> None:
    result = await BwrapSandbox().exec_code(
        "while True:\n    pass\n", timeout_s=60, limits=SandboxLimits(cpu_s=1)
    )
    assert not result.timed_out  # the kernel stopped it, not the wall clock
    assert result.exit_code != 0


async def test_what_it_cannot_enforce_raises_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')"
    with pytest.raises(ExampleSandboxError, match="cannot enforce pids"):
        await BwrapSandbox().exec_code(code, limits=SandboxLimits(pids=4))
    with pytest.raises(ExampleSandboxError, match="only python"):
        await BwrapSandbox().exec_code(code, "bash")
    for name in ("../escape.txt", "/etc/passwd", "a/../../b", "", "a\x00b"):
        with pytest.raises(ExampleSandboxError, match="relative path"):
            await BwrapSandbox().exec_code(code, files={name: b"x"})
    assert not marker.exists()


async def test_without_bwrap_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ExampleSandboxError, match="needs bubblewrap"):
        await BwrapSandbox().exec_code("print(1)")


async def test_host_files_are_read_only() -> None:
    result = await BwrapSandbox().exec_code("open('/usr/flujo-example-probe', 'w')", timeout_s=20)
    assert not result.ok
    assert "Read-only file system" in result.stderr or "Permission" in result.stderr
