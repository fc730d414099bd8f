"""Conformance suite for :class:`~flujo.domain.interfaces.SandboxProtocol` implementations."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from flujo.domain.interfaces import ExecutionResult, SandboxLimits, SandboxProtocol

__all__ = ["SandboxConformance"]

NOTICE_ALLOWANCE = 256
"""Bytes a truncated stream may exceed ``output_bytes`` by, for a truncation notice."""

ENFORCEABLE_LIMITS = frozenset({"memory_mb", "cpu_s", "pids", "network"})
"""The names a sandbox may list in ``enforced_limits`` (``output_bytes`` is always required)."""

MEMORY_LIMIT_MB = 128
"""``memory_mb`` of the memory check; the code then tries to fill three times as much."""

PIDS_LIMIT = 8
"""``pids`` of the process check; the code then tries to start three times as many."""


def _enforced_limits(sandbox: object) -> frozenset[str]:
    """What ``sandbox`` declares it enforces; every limit when it declares nothing."""
    declared = getattr(sandbox, "enforced_limits", None)
    if declared is None:
        return ENFORCEABLE_LIMITS
    names = frozenset(declared)
    unknown = sorted(names - ENFORCEABLE_LIMITS)
    assert not unknown, (
        f"enforced_limits names unknown limit(s) {unknown}; known: {sorted(ENFORCEABLE_LIMITS)}"
    )
    return names


class SandboxConformance:
    """Checks that a sandbox runs Python code the way the code interpreter tool relies on.

    Subclass it (the class name must start with ``Test``) and provide a ``sandbox`` fixture::

        from flujo.testing.conformance import SandboxConformance

        class TestMySandbox(SandboxConformance):
            @pytest.fixture
            def sandbox(self):
                return MySandbox()

    Optional fixtures: ``sandbox_timeout_s`` (default ``1.0``), the ``timeout_s`` the
    infinite-loop check passes; and ``sandbox_guard_s`` (default ``60.0``), how long any one
    execution may take before the suite gives up on it (a sandbox that ignores its timeout
    fails instead of hanging the test session).

    A sandbox that keeps files between executions on purpose declares a class or instance
    attribute ``stateful = True``; the isolation check is then skipped.

    A sandbox declares the limits it enforces with ``enforced_limits``, a set of
    :class:`SandboxLimits` field names among ``memory_mb``, ``cpu_s``, ``pids`` and
    ``network`` (``output_bytes`` is always required). Without the attribute the suite holds
    it to all four. Each listed limit is checked for real; asking for an unlisted
    ``memory_mb``, ``cpu_s`` or ``pids`` must raise (the contract: a sandbox that cannot
    enforce a limit raises, never runs unlimited). Leaving ``network`` out declares that code
    can reach the network; the network check is then skipped.

    Async checks are marked ``@pytest.mark.asyncio``, so they run in pytest-asyncio's strict
    and auto modes alike.
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def sandbox(self) -> SandboxProtocol:
        """The sandbox under test. **Required**: override it in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `sandbox` fixture returning the sandbox to test"
        )

    @pytest.fixture
    def sandbox_timeout_s(self) -> float:
        """The ``timeout_s`` the infinite-loop check runs with. Default 1 second."""
        return 1.0

    @pytest.fixture
    def sandbox_guard_s(self) -> float:
        """How long one execution may take before the suite fails it. Default 60 seconds."""
        return 60.0

    # ------------------------------------------------------------------ helpers

    @staticmethod
    async def _exec(
        sandbox: SandboxProtocol,
        code: str,
        guard_s: float,
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecutionResult:
        kwargs: dict[str, Any] = {}
        if files is not None:
            kwargs["files"] = files
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
        if limits is not None:
            kwargs["limits"] = limits
        # Not asyncio.wait_for: a TimeoutError the sandbox raises itself must show as such.
        task = asyncio.ensure_future(sandbox.exec_code(code, **kwargs))
        done, _ = await asyncio.wait({task}, timeout=guard_s)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # let the sandbox clean up (kill its process) before failing
            pytest.fail(f"the sandbox did not return within {guard_s:g}s (sandbox_guard_s)")
        result = task.result()
        assert isinstance(result, ExecutionResult), (
            f"exec_code must return an ExecutionResult, got {type(result).__name__}"
        )
        return result

    # ------------------------------------------------------------------ checks

    @pytest.mark.asyncio
    async def test_successful_run_is_reported(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """Code that succeeds gives ``exit_code == 0``, ``ok``, its output in ``stdout``, a
        non-empty ``backend`` name and a non-negative ``duration_ms``. ``lang`` defaults to
        Python."""
        result = await self._exec(sandbox, "print('conformance-ok')", sandbox_guard_s)
        assert result.exit_code == 0, f"exit_code {result.exit_code}, stderr: {result.stderr}"
        assert result.ok, f"result.ok is False: {result!r}"
        assert "conformance-ok" in result.stdout, f"stdout: {result.stdout!r}"
        assert not result.timed_out
        assert not result.truncated
        assert isinstance(result.backend, str), (
            "result.backend must name the backend that ran the code"
        )
        assert result.backend.strip(), "result.backend must name the backend that ran the code"
        assert result.duration_ms >= 0, f"duration_ms is negative: {result.duration_ms}"

    @pytest.mark.asyncio
    async def test_stdout_and_stderr_are_captured_separately(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """What the code writes to stdout lands in ``stdout`` only and what it writes to
        stderr in ``stderr`` only, decoded as UTF-8."""
        code = "import sys\nprint('to-stdout ✓')\nprint('to-stderr ✗', file=sys.stderr)\n"
        result = await self._exec(sandbox, code, sandbox_guard_s)
        assert "to-stdout ✓" in result.stdout, f"stdout: {result.stdout!r}"
        assert "to-stderr ✗" in result.stderr, f"stderr: {result.stderr!r}"
        assert "to-stderr" not in result.stdout, "stderr leaked into stdout"
        assert "to-stdout" not in result.stderr, "stdout leaked into stderr"

    @pytest.mark.asyncio
    async def test_exit_code_is_propagated(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """The code's exit status is ``exit_code`` (``sys.exit(3)`` gives 3), and ``ok`` is
        False."""
        result = await self._exec(sandbox, "import sys\nsys.exit(3)", sandbox_guard_s)
        assert result.exit_code == 3, f"expected exit_code 3, got {result.exit_code}"
        assert not result.ok
        assert not result.timed_out

    @pytest.mark.asyncio
    async def test_exception_is_a_result_not_a_raise(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """An exception in the code is reported, not raised: a non-zero ``exit_code`` and the
        Python traceback in ``stderr``."""
        result = await self._exec(sandbox, "raise ValueError('boom-marker')", sandbox_guard_s)
        assert result.exit_code is not None, (
            f"an uncaught exception must give a non-zero exit_code, got {result.exit_code}"
        )
        assert result.exit_code != 0, (
            f"an uncaught exception must give a non-zero exit_code, got {result.exit_code}"
        )
        assert "Traceback" in result.stderr, f"stderr has no traceback: {result.stderr!r}"
        assert "ValueError" in result.stderr, f"stderr: {result.stderr!r}"
        assert "boom-marker" in result.stderr, f"stderr: {result.stderr!r}"
        assert not result.ok

    @pytest.mark.asyncio
    async def test_timeout_stops_an_infinite_loop(
        self, sandbox: SandboxProtocol, sandbox_timeout_s: float, sandbox_guard_s: float
    ) -> None:
        """``timeout_s`` stops code that never ends: the result has ``timed_out=True`` and is
        not ``ok``, and the sandbox runs the next code normally."""
        result = await self._exec(
            sandbox, "while True:\n    pass\n", sandbox_guard_s, timeout_s=sandbox_timeout_s
        )
        assert result.timed_out, f"timed_out is False after an infinite loop: {result!r}"
        assert not result.ok
        after = await self._exec(sandbox, "print('alive')", sandbox_guard_s)
        assert after.ok, f"the sandbox broke after a timeout: {after!r}"
        assert "alive" in after.stdout, f"the sandbox broke after a timeout: {after!r}"

    @pytest.mark.asyncio
    async def test_files_are_readable(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """Every entry of ``files`` is readable by the code at its relative path from the
        working directory, byte for byte."""
        files = {"input.txt": b"payload-123\n", "blob.bin": bytes([0, 255, 10, 13, 128])}
        code = (
            "print(open('input.txt').read().strip())\nprint(open('blob.bin', 'rb').read().hex())\n"
        )
        result = await self._exec(sandbox, code, sandbox_guard_s, files=files)
        assert result.ok, f"reading the files failed: {result.stderr}"
        assert "payload-123" in result.stdout, f"stdout: {result.stdout!r}"
        assert files["blob.bin"].hex() in result.stdout, "binary file content changed"

    @pytest.mark.asyncio
    async def test_output_over_limit_is_truncated(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """With ``limits=SandboxLimits(output_bytes=n)``, output beyond ``n`` bytes is cut:
        ``truncated=True`` and ``stdout`` holds at most ``n`` bytes (plus a short notice of at
        most 256 bytes). Output under the limit is kept whole with ``truncated=False``."""
        limit = 1024
        limits = SandboxLimits(output_bytes=limit)
        big = await self._exec(sandbox, "print('x' * 200_000)", sandbox_guard_s, limits=limits)
        assert big.truncated, "200 kB of output under output_bytes=1024 must set truncated"
        size = len(big.stdout.encode())
        assert size <= limit + NOTICE_ALLOWANCE, f"stdout kept {size} bytes over a {limit} limit"
        assert "x" in big.stdout, "a truncated stdout must keep the start of the output"
        small = await self._exec(sandbox, "print('y' * 10)", sandbox_guard_s, limits=limits)
        assert not small.truncated, "output under the limit must not be marked truncated"
        assert "y" * 10 in small.stdout

    @pytest.mark.asyncio
    async def test_executions_do_not_share_files(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """A file written by one execution is absent from the next: every run starts clean.
        Skipped when the sandbox declares ``stateful = True``."""
        if getattr(sandbox, "stateful", False) is True:
            pytest.skip("the sandbox declares stateful = True")
        name = f"conformance-{uuid.uuid4().hex}.txt"
        wrote = await self._exec(
            sandbox, f"open({name!r}, 'w').write('left behind')\nprint('written')", sandbox_guard_s
        )
        assert wrote.ok, f"the code could not write to its working directory: {wrote.stderr}"
        check = await self._exec(
            sandbox,
            f"import os\nprint('present' if os.path.exists({name!r}) else 'absent')",
            sandbox_guard_s,
        )
        assert check.ok, f"stderr: {check.stderr}"
        assert "absent" in check.stdout, (
            "a file written by one execution was visible to the next; declare "
            "`stateful = True` if that is intended"
        )

    @pytest.mark.asyncio
    async def test_timeout_stops_the_codes_child_processes(
        self, sandbox: SandboxProtocol, sandbox_timeout_s: float, sandbox_guard_s: float
    ) -> None:
        """``timeout_s`` covers the processes the code started: a child that outlives the
        timeout (holding stdout open) is stopped with it, so the result comes back
        ``timed_out`` without the child's later output."""
        delay = sandbox_timeout_s * 3
        code = (
            "import os, sys, time\n"
            "if os.fork() == 0:\n"
            f"    time.sleep({delay!r})\n"
            "    print('child-outlived-timeout', flush=True)\n"
            "    os._exit(0)\n"
            "print('forked', flush=True)\n"
            "while True:\n"
            "    pass\n"
        )
        result = await self._exec(sandbox, code, sandbox_guard_s, timeout_s=sandbox_timeout_s)
        assert result.timed_out, f"timed_out is False after an infinite loop: {result!r}"
        assert not result.ok
        assert "child-outlived-timeout" not in result.stdout, (
            "a child process kept running after the timeout: stop the code's whole process "
            "tree, not only the process you started"
        )

    @pytest.mark.asyncio
    async def test_network_is_denied(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """With ``network=False`` the code cannot connect to a TCP server on 127.0.0.1 that
        this test listens on (and that the test itself reaches first, so the check cannot
        pass for want of a server). Skipped when ``enforced_limits`` leaves out ``network``."""
        if "network" not in _enforced_limits(sandbox):
            pytest.skip("the sandbox declares it does not cut network off (enforced_limits)")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            server.settimeout(2.0)
            port = server.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=2.0):
                control, _ = server.accept()  # the server is reachable from here
                control.close()
            code = (
                "import socket\n"
                "print('attempting', flush=True)\n"
                "try:\n"
                f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
                "except OSError as exc:\n"
                "    print('blocked', type(exc).__name__)\n"
                "else:\n"
                "    print('connected')\n"
            )
            result = await self._exec(
                sandbox, code, sandbox_guard_s, limits=SandboxLimits(network=False)
            )
            assert "attempting" in result.stdout, f"the connection attempt did not run: {result!r}"
            assert "connected" not in result.stdout, (
                f"code with network=False connected to 127.0.0.1:{port} on the host"
            )
            server.settimeout(0.0)
            try:
                leaked, _ = server.accept()
            except BlockingIOError:
                return  # nobody connected
            leaked.close()
            pytest.fail(f"code with network=False connected to 127.0.0.1:{port} on the host")

    @pytest.mark.asyncio
    async def test_memory_limit_is_enforced(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """With ``memory_mb=128`` a small allocation succeeds and filling 384 MB fails (a
        non-ok result, never reaching the line after the allocation). Skipped when
        ``enforced_limits`` leaves out ``memory_mb`` (then asking for it must raise)."""
        if "memory_mb" not in _enforced_limits(sandbox):
            pytest.skip("the sandbox declares it cannot enforce memory_mb (enforced_limits)")
        limits = SandboxLimits(memory_mb=MEMORY_LIMIT_MB)
        small = await self._exec(
            sandbox, "x = b'x' * (8 << 20)\nprint('small-ok')", sandbox_guard_s, limits=limits
        )
        assert small.ok, f"8 MB under memory_mb={MEMORY_LIMIT_MB} failed: {small!r}"
        assert "small-ok" in small.stdout
        big_mb = MEMORY_LIMIT_MB * 3
        big = await self._exec(
            sandbox,
            f"print('allocating', flush=True)\nx = b'x' * ({big_mb} << 20)\nprint('big-ok')",
            sandbox_guard_s,
            limits=limits,
        )
        assert "allocating" in big.stdout, f"the allocation did not run: {big!r}"
        assert "big-ok" not in big.stdout, (
            f"the code filled {big_mb} MB under memory_mb={MEMORY_LIMIT_MB}"
        )
        assert not big.ok, f"the code filled {big_mb} MB under memory_mb={MEMORY_LIMIT_MB}"

    @pytest.mark.asyncio
    async def test_cpu_limit_is_enforced(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """With ``cpu_s=1`` (and a generous ``timeout_s``) code that burns 4 seconds of CPU is
        stopped before it finishes. Skipped when ``enforced_limits`` leaves out ``cpu_s``."""
        if "cpu_s" not in _enforced_limits(sandbox):
            pytest.skip("the sandbox declares it cannot enforce cpu_s (enforced_limits)")
        code = (
            "import time\nprint('burning', flush=True)\n"
            "while time.process_time() < 4:\n    pass\nprint('cpu-finished')\n"
        )
        result = await self._exec(
            sandbox, code, sandbox_guard_s, timeout_s=30.0, limits=SandboxLimits(cpu_s=1.0)
        )
        assert "burning" in result.stdout, f"the code did not run: {result!r}"
        assert "cpu-finished" not in result.stdout, "the code used 4 s of CPU under cpu_s=1"
        assert not result.ok

    @pytest.mark.asyncio
    async def test_process_limit_is_enforced(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """With ``pids=8`` code that tries to start 24 processes at once gets at most 8 (it
        counts the forks that worked and those refused). Skipped when ``enforced_limits``
        leaves out ``pids``."""
        if "pids" not in _enforced_limits(sandbox):
            pytest.skip("the sandbox declares it cannot enforce pids (enforced_limits)")
        wanted = PIDS_LIMIT * 3
        # Children block on a pipe until the parent has counted, so all are alive at once.
        code = (
            "import os\n"
            "r, w = os.pipe()\n"
            "started = refused = 0\n"
            f"for _ in range({wanted}):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError:\n"
            "        refused += 1\n"
            "        continue\n"
            "    if pid == 0:\n"
            "        os.close(w)\n"
            "        os.read(r, 1)\n"
            "        os._exit(0)\n"
            "    started += 1\n"
            "os.close(w)\n"
            "print(f'started={started} refused={refused}', flush=True)\n"
            "for _ in range(started):\n"
            "    os.wait()\n"
        )
        result = await self._exec(
            sandbox, code, sandbox_guard_s, limits=SandboxLimits(pids=PIDS_LIMIT)
        )
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("started=")), None)
        assert line is not None, f"the code did not report its forks: {result!r}"
        fields = dict(part.split("=") for part in line.split())
        started, refused = int(fields["started"]), int(fields["refused"])
        assert started + refused == wanted
        assert started < PIDS_LIMIT, (
            f"{started} child processes started under pids={PIDS_LIMIT} "
            "(the code itself counts as one)"
        )
        assert refused > 0

    @pytest.mark.asyncio
    async def test_limits_it_cannot_enforce_raise(
        self, sandbox: SandboxProtocol, sandbox_guard_s: float
    ) -> None:
        """Asking for a ``memory_mb``, ``cpu_s`` or ``pids`` the sandbox leaves out of
        ``enforced_limits`` raises (any exception) instead of running the code unlimited.
        Skipped when it declares all three."""
        unenforced = sorted({"memory_mb", "cpu_s", "pids"} - _enforced_limits(sandbox))
        if not unenforced:
            pytest.skip("the sandbox declares it enforces memory_mb, cpu_s and pids")
        values: dict[str, Any] = {"memory_mb": 256, "cpu_s": 10.0, "pids": 16}
        for name in unenforced:
            limits = SandboxLimits(**{name: values[name]})
            try:
                result = await self._exec(
                    sandbox, "print('ran-unlimited')", sandbox_guard_s, limits=limits
                )
            except Exception:  # noqa: BLE001 - the contract names no error type: any raise
                continue
            pytest.fail(
                f"{name}={values[name]} is not in enforced_limits, yet the code ran "
                f"instead of the sandbox raising: {result!r}"
            )
