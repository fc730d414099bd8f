"""Every execution is reported to the core as a ``sandbox.execute`` operation (a tracing
plugin's span): with what describes it (backend, language, exit status, duration, sizes),
never the code, files or output; the remote backend's request is made inside it, so the
sidecar's ``traceparent`` names the execution's span.

A real runner; the "tracer" is the core's test plugin
(``flujo.testing.operations.OperationRecorder``); flujo-otel's real span is checked with
every package installed, in ``tests/integration``. The local backend runs bubblewrap for
real; the remote one talks to an ``httpx.MockTransport`` standing in for the sidecar.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import httpx

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.plugin import Operation, providing_headers
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.operations import OperationRecorder
from flujo_sandbox.local import LocalSandbox
from flujo_sandbox.remote import RemoteSandbox
from flujo_sandbox.settings import SandboxSettings

SECRET = "s3cr3t-marker-7781"


class Tracer(OperationRecorder):
    """Records each operation; while one runs, answers a traceparent naming it (as a
    tracing plugin's current span would)."""

    def around(self, operation: Operation) -> contextlib.AbstractContextManager[object]:
        parent = f"00-{'ab' * 16}-{len(self.seen) + 1:016x}-01"
        return providing_headers(lambda: {"traceparent": parent})


async def _run_in_a_step(tmp_path: Path, sandbox: Any, code: str) -> tuple[Tracer, Any]:
    tracer = Tracer()
    manager = PluginManager(strict=True)
    manager.register(tracer, "tracer")

    async def execute(text: str) -> Any:
        return await sandbox.exec_code(text, "python", files={"in.txt": SECRET.encode()})

    pipeline = Pipeline([Step.from_callable(execute, name="code")])
    state = SQLiteBackend(tmp_path / "s.db")
    async with Flujo(pipeline, config=FlujoConfig(plugin_manager=manager), state=state) as r:
        result = await r.run_async(code)
    assert result.succeeded, result.error
    return tracer, result.output


async def test_a_local_execution_is_reported_without_its_code_or_output(
    tmp_path: Path, local_sandbox: LocalSandbox
) -> None:
    code = f"print('{SECRET}'); import sys; print('{SECRET}', file=sys.stderr); exit(3)"
    tracer, output = await _run_in_a_step(tmp_path, local_sandbox, code)
    assert output.exit_code == 3
    [op] = tracer.seen
    assert op.kind == "sandbox.execute"
    assert op.runs == ()  # part of the step: nested under what is current
    attributes = op.attributes
    assert attributes["flujo.sandbox.backend"] == "local"
    assert attributes["flujo.sandbox.language"] == "python"
    assert attributes["flujo.sandbox.files"] == 1
    assert attributes["flujo.sandbox.exit_code"] == 3
    assert attributes["flujo.sandbox.timed_out"] is False
    assert attributes["flujo.sandbox.stdout_bytes"] == len(SECRET) + 1
    assert attributes["flujo.sandbox.duration_ms"] == round(output.duration_ms, 3)
    assert op.error is None
    assert SECRET not in tracer.carried()


async def test_the_remote_request_is_made_inside_the_execution_and_an_error_is_reported(
    tmp_path: Path,
) -> None:
    seen: list[str] = []

    def sidecar(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent", ""))
        return httpx.Response(503, json={"error": f"busy with {SECRET}"})

    remote = RemoteSandbox(
        SandboxSettings(api_url="http://sandbox.test:8787", retries=0),
        transport=httpx.MockTransport(sidecar),
    )
    tracer, output = await _run_in_a_step(tmp_path, remote, "print(1)")
    [op] = tracer.seen
    assert seen == [f"00-{'ab' * 16}-{1:016x}-01"]  # the execution's own trace context
    assert op.attributes["flujo.sandbox.backend"] == "remote"
    assert "flujo.sandbox.exit_code" not in op.attributes  # it never ran
    assert op.error is not None
    assert op.error == output.error
