"""The sidecar's HTTP behaviour and the remote client's safety rules.

The sidecar tests use real HTTP on 127.0.0.1 (over a fake in-process backend, so they run
without bubblewrap). The client tests use an ``httpx.MockTransport`` standing in for a sandbox
service, to produce answers a healthy sidecar never gives.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flujo.domain.interfaces import ExecutionResult, SandboxLimits
from flujo_sandbox.errors import SandboxConfigError, SandboxFileError, SandboxLimitError
from flujo_sandbox.remote import RemoteSandbox
from flujo_sandbox.server import SandboxServer, ServerConfig
from flujo_sandbox.settings import SandboxSettings


class FakeBackend:
    """Echoes the request; ``gate`` holds executions open to saturate the server."""

    name = "fake"
    languages = ("python",)

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.calls: list[dict[str, Any]] = []

    async def exec_code(self, code: str, lang: str = "python", **kwargs: Any) -> ExecutionResult:
        self.calls.append({"code": code, "lang": lang, **kwargs})
        if self.gate is not None:
            await self.gate.wait()
        limits = kwargs.get("limits") or SandboxLimits()
        return ExecutionResult(
            stdout=f"ran {code}",
            stderr="",
            exit_code=0,
            artifacts={"r.bin": b"\x00\x01"},
            limits={"memory_mb": limits.memory_mb, "pids": limits.pids, "network": False},
            backend="fake",
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[SandboxServer, FakeBackend, str]]:
    backend = FakeBackend()
    server = SandboxServer(backend, ServerConfig(max_concurrency=1, token="tok"))
    await server.start("127.0.0.1", 0)
    try:
        yield server, backend, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def test_healthz_and_routes(served: tuple[SandboxServer, FakeBackend, str]) -> None:
    _, _, url = served
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{url}/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert (await client.get(f"{url}/nope")).status_code == 404
        assert (await client.get(f"{url}/execute")).status_code == 405


async def test_token_is_required(served: tuple[SandboxServer, FakeBackend, str]) -> None:
    _, backend, url = served
    async with httpx.AsyncClient() as client:
        missing = await client.post(f"{url}/execute", json={"code": "1"})
        wrong = await client.post(
            f"{url}/execute", json={"code": "1"}, headers={"Authorization": "Bearer nope"}
        )
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert backend.calls == []


async def test_legacy_request_shape(served: tuple[SandboxServer, FakeBackend, str]) -> None:
    """The flujo 0.6 request: text files, environment, arguments, no limits."""
    _, backend, url = served
    body = {
        "code": "print(1)",
        "language": "python",
        "files": {"req.txt": "text\n", "b.bin": {"base64": base64.b64encode(b"\xff").decode()}},
        "environment": {},
        "arguments": [],
        "timeout_s": 9999,
    }
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{url}/execute", json=body, headers={"Authorization": "Bearer tok"}
        )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["stdout"] == "ran print(1)"
    assert data["exit_code"] == 0
    assert data["artifacts"] == {"r.bin": {"base64": "AAE="}}
    assert data["sandbox_id"]
    call = backend.calls[0]
    assert call["files"] == {"req.txt": b"text\n", "b.bin": b"\xff"}
    assert call["timeout_s"] == 300.0  # capped to max_timeout_s


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 422),
        (json.dumps({"code": 1}).encode(), 422),
        (json.dumps({"code": "x", "timeout_s": -1}).encode(), 422),
        (json.dumps({"code": "x", "files": {"a": 3}}).encode(), 422),
        (json.dumps({"code": "x", "limits": {"pids": "many"}}).encode(), 422),
    ],
)
async def test_bad_requests(
    served: tuple[SandboxServer, FakeBackend, str], body: bytes, status: int
) -> None:
    _, backend, url = served
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{url}/execute", content=body, headers={"Authorization": "Bearer tok"}
        )
    assert answer.status_code == status, answer.text
    assert backend.calls == []


async def test_saturated_server_answers_429(
    served: tuple[SandboxServer, FakeBackend, str],
) -> None:
    server, backend, url = served
    backend.gate = asyncio.Event()
    headers = {"Authorization": "Bearer tok"}
    async with httpx.AsyncClient() as client:
        first = asyncio.create_task(
            client.post(f"{url}/execute", json={"code": "slow"}, headers=headers)
        )
        async with asyncio.timeout(30):  # the first request is being served
            while server.active == 0:
                await asyncio.sleep(0.01)
        busy = await client.post(f"{url}/execute", json={"code": "fast"}, headers=headers)
        backend.gate.set()
        done = await first
    assert busy.status_code == 429
    assert busy.headers["Retry-After"] == "1"
    assert done.status_code == 200


async def test_oversized_request_is_refused() -> None:
    server = SandboxServer(FakeBackend(), ServerConfig(max_request_bytes=100))
    await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{server.port}/execute", json={"code": "x" * 500}
            )
        assert answer.status_code == 413
    finally:
        await server.close()


async def test_client_round_trip_through_a_server(
    served: tuple[SandboxServer, FakeBackend, str],
) -> None:
    _, backend, url = served
    box = RemoteSandbox(SandboxSettings(api_url=url), token="tok")
    result = await box.exec_code("x = 1", files={"a.txt": b"hi", "b.bin": b"\xff\xfe"})
    assert result.ok
    assert result.stdout == "ran x = 1"
    assert result.artifacts == {"r.bin": b"\x00\x01"}
    assert result.backend == "remote(fake)"
    assert backend.calls[0]["files"] == {"a.txt": b"hi", "b.bin": b"\xff\xfe"}
    await box.aclose()


def _remote(handler: Any, **settings: Any) -> RemoteSandbox:
    return RemoteSandbox(
        SandboxSettings(api_url="http://sandbox.test:8787", **settings),
        transport=httpx.MockTransport(handler),
    )


GOOD = {"stdout": "ok", "stderr": "", "exit_code": 0, "timed_out": False, "error": None}


async def test_retries_connection_errors_only() -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    result = await _remote(refuse, retries=2).exec_code("print(1)")
    assert len(calls) == 3
    assert result.error is not None
    assert "cannot reach" in result.error

    calls.clear()

    def read_timeout(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    result = await _remote(read_timeout, retries=2).exec_code("print(1)")
    assert len(calls) == 1, "a request that was sent may have run: never retried"
    assert result.error is not None
    assert not result.ok


async def test_response_size_is_capped() -> None:
    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**GOOD, "stdout": "x" * 5000, "limits": {}})

    result = await _remote(huge, max_response_bytes=1024).exec_code("print(1)")
    assert result.error is not None
    assert "over 1024 bytes" in result.error


async def test_unconfirmed_limits_fail_closed_unless_trusted() -> None:
    seen: list[dict[str, Any]] = []

    def legacy(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={**GOOD, "sandbox_id": "abc", "artifacts": None})

    with pytest.raises(SandboxLimitError, match="trust_remote_limits"):
        await _remote(legacy).exec_code("print(1)")
    result = await _remote(legacy, trust_remote_limits=True).exec_code("print(1)")
    assert result.ok
    assert result.stdout == "ok"
    assert set(seen[0]) >= {"code", "language", "files", "environment", "arguments", "timeout_s"}

    def weaker(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**GOOD, "limits": {"pids": 999, "network": False}})

    with pytest.raises(SandboxLimitError, match="pids"):
        await _remote(weaker).exec_code("print(1)", limits=SandboxLimits(pids=10))


async def test_artifact_encodings_and_foreign_urls() -> None:
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            fetched.append(str(request.url))
            return httpx.Response(200, content=b"from-url")
        artifacts = {
            "plain": base64.b64encode(b"p").decode(),
            "obj": {"base64": base64.b64encode(b"o").decode()},
            "data": {"data": "text"},
            "same": {"url": "/artifacts/1"},
            "evil": {"url": "http://169.254.169.254/latest/meta-data"},
        }
        return httpx.Response(
            200, json={**GOOD, "limits": {"network": False}, "artifacts": artifacts}
        )

    result = await _remote(handler).exec_code("print(1)")
    assert result.artifacts == {
        "plain": b"p",
        "obj": b"o",
        "data": b"text",
        "same": b"from-url",
    }
    assert fetched == ["http://sandbox.test:8787/artifacts/1"]
    assert "another origin" in result.stderr


async def test_busy_and_http_errors_are_results() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": "busy"})

    result = await _remote(busy).exec_code("print(1)")
    assert not result.ok
    assert result.error is not None
    assert "429" in result.error

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="oops")

    result = await _remote(broken).exec_code("print(1)")
    assert not result.ok
    assert result.error is not None

    def refused_file(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": "bad name", "error_type": "file"})

    with pytest.raises(SandboxFileError):
        await _remote(refused_file).exec_code("print(1)")


async def test_output_is_cut_on_the_client_too() -> None:
    def chatty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={**GOOD, "stdout": "y" * 10_000, "limits": {"network": False}}
        )

    result = await _remote(chatty).exec_code("print(1)", limits=SandboxLimits(output_bytes=1000))
    assert result.truncated
    assert len(result.stdout.encode()) <= 1000 + 256


def test_missing_api_url_is_a_clear_error() -> None:
    with pytest.raises(SandboxConfigError, match="api_url"):
        RemoteSandbox(SandboxSettings())
    with pytest.raises(SandboxConfigError, match="http"):
        RemoteSandbox(SandboxSettings(api_url="file:///etc/passwd"))


async def test_bearer_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={**GOOD, "limits": {"network": False}})

    monkeypatch.setenv("MY_SANDBOX_TOKEN", "s3")
    await _remote(handler, token_env="MY_SANDBOX_TOKEN").exec_code("print(1)")
    monkeypatch.delenv("MY_SANDBOX_TOKEN")
    await _remote(handler, token_env="MY_SANDBOX_TOKEN").exec_code("print(1)")
    assert seen == ["Bearer s3", None]


async def test_callers_can_only_tighten_the_sidecar_limits() -> None:
    backend = FakeBackend()
    ceilings = SandboxLimits(memory_mb=256, cpu_s=10, pids=32, output_bytes=10_000)
    server = SandboxServer(backend, ServerConfig(ceilings=ceilings))
    await server.start("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/execute"
        async with httpx.AsyncClient() as client:
            await client.post(url, json={"code": "a", "limits": {"memory_mb": 10**6, "pids": 8}})
            await client.post(url, json={"code": "b"})
    finally:
        await server.close()
    loose, unset = (call["limits"] for call in backend.calls)
    assert loose == SandboxLimits(memory_mb=256, cpu_s=10, pids=8, output_bytes=10_000)
    assert unset == ceilings


async def test_connection_cap() -> None:
    """At the cap an idle connection gives way to a new one (it cannot lock callers out)."""
    server = SandboxServer(FakeBackend(), ServerConfig(max_connections=1))
    await server.start("127.0.0.1", 0)
    try:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(10):
            while not server.connections:
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert answer.status_code == 200
        async with asyncio.timeout(10):
            assert await idle_reader.read() == b"", "the idle connection was dropped"
        assert server.connections <= 1
        idle_writer.close()
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "missing or wrong bearer token"}, "FLUJO_SANDBOX_TOKEN"),
        (401, "not json\nsecond line", "HTTP 401: refused"),
        (403, {"error": "Host 'x' is not\nallowed"}, "Host 'x' is not allowed"),
    ],
)
async def test_refused_identity_is_a_config_error(status: int, body: Any, expected: str) -> None:
    """A service refusing *who* calls (token, Host, Origin) is a configuration problem for the
    caller: a one-line SandboxConfigError (exit 2 on the CLI), not a result to retry."""

    def refuse(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(SandboxConfigError, match=expected) as caught:
        await _remote(refuse).exec_code("print(1)")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("timeout", [float("nan"), float("inf") * 0, -1.0, 0, "5", True])
async def test_client_refuses_invalid_timeouts_before_sending(timeout: Any) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={**GOOD, "limits": {"network": False}})

    with pytest.raises(SandboxLimitError, match="timeout_s"):
        await _remote(record).exec_code("print(1)", timeout_s=timeout)
    assert sent == []


async def test_token_whitespace_is_dropped_and_non_ascii_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={**GOOD, "limits": {"network": False}})

    # A secret mounted from a file usually ends in a newline.
    monkeypatch.setenv("FLUJO_SANDBOX_TOKEN", "s3cret\n")
    await _remote(handler).exec_code("print(1)")
    assert seen == ["Bearer s3cret"]
    monkeypatch.setenv("FLUJO_SANDBOX_TOKEN", "caf\u00e9")
    with pytest.raises(SandboxConfigError, match=r"FLUJO_SANDBOX_TOKEN.*printable ASCII"):
        await _remote(handler).exec_code("print(1)")
    assert len(seen) == 1


async def test_calls_carry_the_steps_trace_context() -> None:
    """A tracing plugin's headers (the core's ``outgoing_headers()``, W3C trace context) go to
    the sidecar; they never replace the client's own headers."""
    from flujo.plugin import providing_headers

    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={**GOOD, "limits": {"network": False}})

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    claims = {"traceparent": parent, "Authorization": "Bearer forged", "Accept": "text/html"}
    with providing_headers(lambda: claims):
        await _remote(handler).exec_code("print(1)")
    await _remote(handler).exec_code("print(1)")  # outside: none
    assert seen[0]["traceparent"] == parent
    assert seen[0]["accept"] == "application/json"
    assert "authorization" not in seen[0]  # only trace context passes the core
    assert "traceparent" not in seen[1]
