"""The sidecar before authentication, over real sockets on 127.0.0.1.

What a caller without the token (or a web page, or a slow or idle client) can make the server
do: it must be answered from the request head without the body being read, time out, give way
at the connection cap, and every malformed field must be answered ``4xx``, never crash the
handler. The backend is a fake in-process one (no bubblewrap needed); the server, its sockets
and the clients are real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flujo.domain.interfaces import ExecutionResult, SandboxLimits
from flujo_sandbox.server import SandboxServer, ServerConfig

TOKEN = "tok-hardening"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND_S = 10.0
"""Upper bound on any single wait, so a regression fails instead of hanging (never a timing
assertion: these only bound how long a broken server is waited for)."""


class Backend:
    """Records calls; ``fail`` makes it raise something the server does not expect."""

    name = "fake"
    languages = ("python",)

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail: BaseException | None = None

    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Any = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
        environment: Any = None,
        arguments: Any = (),
    ) -> ExecutionResult:
        self.calls.append({"code": code, "limits": limits, "timeout_s": timeout_s})
        if self.fail is not None:
            raise self.fail
        return ExecutionResult("ok", "", 0, limits={"network": False}, backend="fake")


async def _start(**config: Any) -> tuple[SandboxServer, Backend]:
    backend = Backend()
    server = SandboxServer(backend, ServerConfig(**{"token": TOKEN, **config}))
    await server.start("127.0.0.1", 0)
    return server, backend


@pytest.fixture
async def served() -> AsyncIterator[tuple[SandboxServer, Backend]]:
    server, backend = await _start()
    try:
        yield server, backend
    finally:
        await server.close()


async def _raw(port: int, data: bytes, *, read_all: bool = True) -> bytes:
    """Send ``data`` on a fresh connection and return what comes back until the server
    closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(BOUND_S):
            return await (reader.read() if read_all else reader.readuntil(b"\r\n\r\n"))
    finally:
        writer.close()


def _head(
    method: str = "POST",
    path: str = "/execute",
    *,
    host: str = "127.0.0.1",
    length: int | None = 32 * 1024 * 1024,
    extra: str = "",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


# ---------------------------------------------------------------- judged from the head alone


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (_head(), 401),
        (_head(extra="Authorization: Bearer wrong\r\n"), 401),
        (_head(extra="Authorization: Basic dG9rLWhhcmRlbmluZw==\r\n"), 401),
        (
            _head(host="rebind.attacker.example:8787", extra=f"Authorization: Bearer {TOKEN}\r\n"),
            403,
        ),
        (_head(extra=f"Origin: http://evil.example\r\nAuthorization: Bearer {TOKEN}\r\n"), 403),
        (_head(length=33 * 1024 * 1024, extra=f"Authorization: Bearer {TOKEN}\r\n"), 413),
        (_head(path="/nope"), 404),
        (_head(method="GET"), 405),
    ],
)
async def test_refused_from_the_head_without_the_body(
    served: tuple[SandboxServer, Backend], head: bytes, status: int
) -> None:
    """Headers declare a 32 MiB body that is never sent: the answer must still arrive (the
    old server waited for the body it would then refuse, holding it all in memory)."""
    server, backend = served
    answer = await _raw(server.port, head)
    assert _status(answer) == status, answer
    assert b"Connection: close" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert backend.calls == []


async def test_busy_server_refuses_before_reading_the_body(
    served: tuple[SandboxServer, Backend],
) -> None:
    server, _ = served
    server.active = server.config.max_concurrency  # every execution slot taken
    try:
        answer = await _raw(server.port, _head(extra=f"Authorization: Bearer {TOKEN}\r\n"))
    finally:
        server.active = 0
    assert _status(answer) == 429
    assert b"Retry-After: 1" in answer


async def test_accepted_head_then_the_body(served: tuple[SandboxServer, Backend]) -> None:
    """The token holder's request goes through, ``Expect: 100-continue`` included."""
    server, backend = served
    body = json.dumps({"code": "print(1)"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            _head(
                length=len(body),
                extra=f"Authorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\n",
            )
        )
        async with asyncio.timeout(BOUND_S):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            head = await reader.readuntil(b"\r\n\r\n")
        assert _status(head) == 200
    finally:
        writer.close()
    assert [c["code"] for c in backend.calls] == ["print(1)"]


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (
            b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 5\r\nContent-Length: 0\r\n\r\n",
            400,
        ),
        (b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1_0\r\n\r\n", 400),
        (b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    ],
)
async def test_malformed_heads_are_answered(
    served: tuple[SandboxServer, Backend], head: bytes, status: int
) -> None:
    server, _ = served
    assert _status(await _raw(server.port, head)) == status


# ---------------------------------------------------------------- Host and Origin


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8787", True),
        ("127.0.0.2", True),
        ("localhost:8787", True),
        ("LOCALHOST", True),
        ("[::1]:8787", True),
        ("sandbox.internal:8787", True),  # configured with allowed_hosts
        ("other.internal", True),  # configured as "Other.Internal:80": the name counts
        ("localhost.:8787", False),
        ("attacker.example", False),
        ("127.0.0.1.nip.io", False),
        ("10.1.2.3", False),  # bound to 127.0.0.1, not to this address
        ("", False),
    ],
)
async def test_host_check_defeats_dns_rebinding(host: str, allowed: bool) -> None:
    server, _ = await _start(allowed_hosts=frozenset({"sandbox.internal", "Other.Internal:80"}))
    try:
        answer = await _raw(
            server.port, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), read_all=False
        )
    finally:
        await server.close()
    assert _status(answer) == (200 if allowed else 403), answer


async def test_allowed_origin_gets_cors_others_are_refused() -> None:
    server, backend = await _start(allowed_origins=frozenset({"http://localhost:3000"}))
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient() as client:
            pre = await client.options(
                f"{url}/execute",
                headers={
                    "Origin": "http://localhost:3000",
                    "Access-Control-Request-Method": "POST",
                },
            )
            ok = await client.post(
                f"{url}/execute",
                json={"code": "1"},
                headers={**AUTH, "Origin": "http://localhost:3000"},
            )
            other = await client.post(
                f"{url}/execute",
                json={"code": "1"},
                headers={**AUTH, "Origin": "http://localhost:3001"},
            )
            null = await client.get(f"{url}/healthz", headers={"Origin": "null"})
    finally:
        await server.close()
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert other.status_code == 403
    assert "--allow-origin" in other.json()["error"]
    assert null.status_code == 403
    assert len(backend.calls) == 1


# ---------------------------------------------------------------- timeouts and the connection cap


async def test_idle_and_slow_connections_are_closed() -> None:
    server, _ = await _start(idle_timeout_s=0.2, body_timeout_s=0.2)
    try:
        # Idle: never sends a byte.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(BOUND_S):
            assert await reader.read() == b""
        writer.close()
        # Slow head: a byte at a time, never finishing.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        async with asyncio.timeout(BOUND_S):
            assert await reader.read() == b""
        writer.close()
        # Accepted head, body never completes: 408.
        answer = await _raw(
            server.port, _head(length=100, extra=f"Authorization: Bearer {TOKEN}\r\n") + b"{"
        )
        assert _status(answer) == 408
        async with asyncio.timeout(BOUND_S):
            while server.connections:
                await asyncio.sleep(0.01)
    finally:
        await server.close()


async def test_idle_connections_cannot_lock_out_the_token_holder() -> None:
    """256 idle connections and 64 slow-header ones (the cap is 256): the token holder's
    requests still succeed, and the server never holds more than the cap."""
    server, backend = await _start()
    cap = server.config.max_connections
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(cap):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            held.append(writer)
        async with asyncio.timeout(BOUND_S):
            while server.connections < cap:
                await asyncio.sleep(0.01)
        for _ in range(64):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(writer)
        await asyncio.sleep(0)
        assert server.connections <= cap
        async with httpx.AsyncClient(timeout=BOUND_S) as client:
            for i in range(3):
                answer = await client.post(
                    f"http://127.0.0.1:{server.port}/execute",
                    json={"code": f"run {i}"},
                    headers=AUTH,
                )
                assert answer.status_code == 200, answer.text
        assert [c["code"] for c in backend.calls] == ["run 0", "run 1", "run 2"]
        assert server.connections <= cap
    finally:
        for writer in held:
            writer.close()
        await server.close()


async def test_connections_serving_accepted_requests_are_never_dropped() -> None:
    """At the cap with every connection busy executing, a newcomer gets 503; the busy ones
    finish."""
    server, backend = await _start(max_connections=2, max_concurrency=2)
    gate = asyncio.Event()

    async def slow(code: str, lang: str = "python", **kwargs: Any) -> ExecutionResult:
        await gate.wait()
        return ExecutionResult(code, "", 0, limits={"network": False}, backend="fake")

    backend.exec_code = slow  # type: ignore[method-assign]
    url = f"http://127.0.0.1:{server.port}/execute"
    try:
        async with httpx.AsyncClient(timeout=BOUND_S) as client:
            running = [
                asyncio.create_task(client.post(url, json={"code": f"c{i}"}, headers=AUTH))
                for i in range(2)
            ]
            async with asyncio.timeout(BOUND_S):
                while server.active < 2:
                    await asyncio.sleep(0.01)
            # Sends nothing yet (a request sent and left unread would turn the refusal into
            # a reset, which is fine for the server but hides the answer from this test).
            answer = await _raw(server.port, b"")
            assert _status(answer) == 503
            gate.set()
            done = await asyncio.gather(*running)
    finally:
        await server.close()
    assert [d.json()["stdout"] for d in done] == ["c0", "c1"]


# ---------------------------------------------------------------- every field validated


NAN_LIMITS = [
    '{"memory_mb": NaN}',
    '{"memory_mb": Infinity}',
    '{"memory_mb": -Infinity}',
    '{"memory_mb": 1e999}',
    '{"memory_mb": -1}',
    '{"memory_mb": 0}',
    '{"memory_mb": 1.5}',
    '{"memory_mb": "256"}',
    '{"memory_mb": true}',
    '{"memory_mb": [256]}',
    '{"memory_mb": {"a": 1}}',
    '{"memory_mb": 100000000000000000000}',
    '{"cpu_s": NaN}',
    '{"cpu_s": 1e999}',
    '{"cpu_s": -0.5}',
    '{"cpu_s": "fast"}',
    '{"pids": NaN}',
    '{"pids": 2.5}',
    '{"pids": -1e999}',
    '{"output_bytes": NaN}',
    '{"output_bytes": 1e308}',
    '{"network": "yes"}',
    '{"network": 1}',
    '{"nope": 1}',
    "[]",
    '"x"',
    "5",
]
BAD_FIELDS = [
    '"timeout_s": NaN',
    '"timeout_s": Infinity',
    '"timeout_s": 1e999',
    '"timeout_s": -1',
    '"timeout_s": 0',
    '"timeout_s": "5"',
    '"timeout_s": true',
    '"timeout_s": [1]',
    '"language": 5',
    '"language": "\\ud800"',
    '"files": "abc"',
    '"files": [["a", "b"]]',
    '"files": 5',
    '"files": {"a": 5}',
    '"files": {"a": "\\ud800"}',
    '"files": {"\\ud800": "x"}',
    '"files": {"a\\u0000b": "x"}',
    '"files": {"a": {"base64": "\\u00e9\\u00e9"}}',
    '"files": {"a": {"base64": "!!"}}',
    '"files": {"a": {"base64": 5}}',
    '"environment": "x"',
    '"environment": ["A"]',
    '"environment": {"A": 5}',
    '"environment": {"A": "\\u0000"}',
    '"environment": {"A": "\\ud800"}',
    '"environment": {"\\ud800": "x"}',
    '"arguments": "x"',
    '"arguments": [5]',
    '"arguments": ["\\u0000"]',
    '"arguments": ["\\udfff"]',
    '"arguments": {"a": 1}',
]
BAD_BODIES = [
    '{"code": null}',
    '{"code": 5}',
    '{"code": ["print(1)"]}',
    '{"code": "\\ud800"}',
    "{}",
    "[]",
    "NaN",
    '"code"',
    *[f'{{"code": "print(1)", "limits": {limits}}}' for limits in NAN_LIMITS],
    *[f'{{"code": "print(1)", {fields}}}' for fields in BAD_FIELDS],
]


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_every_invalid_field_is_a_422_naming_it(
    served: tuple[SandboxServer, Backend], body: str
) -> None:
    server, backend = served
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        answer = await client.post(
            f"http://127.0.0.1:{server.port}/execute", content=body.encode(), headers=AUTH
        )
    assert answer.status_code == 422, (body, answer.text)
    message = answer.json()["error"]
    assert message
    assert "Traceback" not in message
    assert backend.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[" * 200_000 + b"]" * 200_000,
        b"\xff\xfe{",
        b'{"code": 1' + b"9" * 5000 + b"}",
    ],
)
async def test_unparseable_bodies_are_400(
    served: tuple[SandboxServer, Backend], body: bytes
) -> None:
    server, backend = served
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        answer = await client.post(
            f"http://127.0.0.1:{server.port}/execute", content=body, headers=AUTH
        )
    assert answer.status_code == 400, answer.text
    assert backend.calls == []


async def test_limit_messages_are_clear(served: tuple[SandboxServer, Backend]) -> None:
    server, _ = served
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        answer = await client.post(
            f"http://127.0.0.1:{server.port}/execute",
            content=b'{"code": "1", "limits": {"memory_mb": NaN}}',
            headers=AUTH,
        )
    assert answer.json() == {
        "error": "limit memory_mb must be a finite number, got nan",
        "error_type": "limit",
    }


async def test_valid_limits_in_every_accepted_form(
    served: tuple[SandboxServer, Backend],
) -> None:
    server, backend = served
    body = {"code": "1", "limits": {"memory_mb": 256.0, "cpu_s": 2, "pids": 8, "network": None}}
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        answer = await client.post(
            f"http://127.0.0.1:{server.port}/execute", json=body, headers=AUTH
        )
    assert answer.status_code == 200, answer.text
    limits = backend.calls[0]["limits"]
    assert limits == SandboxLimits(memory_mb=256, cpu_s=2.0, pids=8, network=False)
    assert type(limits.memory_mb) is int


async def test_an_unexpected_backend_error_is_answered_500(
    served: tuple[SandboxServer, Backend],
) -> None:
    server, backend = served
    backend.fail = RuntimeError("boom")
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        broken = await client.post(
            f"http://127.0.0.1:{server.port}/execute", json={"code": "1"}, headers=AUTH
        )
        backend.fail = None
        fine = await client.post(
            f"http://127.0.0.1:{server.port}/execute", json={"code": "2"}, headers=AUTH
        )
    assert broken.status_code == 500
    assert "boom" not in broken.text
    assert fine.status_code == 200
