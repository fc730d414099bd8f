"""The sidecar: ``flujo sandbox serve`` serves the remote contract over a local backend.

A deliberately small HTTP/1.1 server on :mod:`asyncio` streams (no web framework to install
beside the app): ``POST /execute`` runs code, ``GET /healthz`` answers liveness. Requests over
the concurrency cap get ``429`` at once rather than queueing, so a caller sees back-pressure
instead of timeouts. A bearer token, when configured, is compared in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flujo.domain.errors import UserError
from flujo.domain.interfaces import SandboxLimits
from flujo_sandbox._common import limits_from_json, result_to_json
from flujo_sandbox.errors import (
    SandboxError,
    SandboxFileError,
    SandboxLimitError,
    UnsupportedLanguageError,
)

__all__ = ["SandboxServer", "ServerConfig"]

_log = logging.getLogger("flujo_sandbox.server")

MAX_HEADER_BYTES = 16 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

ExecFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How the sidecar behaves."""

    max_concurrency: int = 4
    """Executions at once; more get ``429``."""
    token: str | None = None
    """Bearer token every ``/execute`` must carry; ``None`` accepts any caller."""
    max_request_bytes: int = 32 * 1024 * 1024
    """Larger request bodies get ``413``."""
    max_timeout_s: float = 300.0
    """``timeout_s`` of a request is capped to this."""
    default_timeout_s: float = 30.0
    """``timeout_s`` when a request gives none."""
    read_timeout_s: float = 30.0
    """How long a client may take to send its request."""
    max_connections: int = 256
    """Open connections at once; more are closed at once (idle or slow clients cannot pile
    up without bound)."""
    ceilings: SandboxLimits | None = None
    """The most a request may ask for: requested ``memory_mb``, ``cpu_s``, ``pids`` and
    ``output_bytes`` above these are lowered to them, and unset ones take them. A caller can
    only tighten the sidecar's limits."""


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SandboxServer:
    """Serves ``sandbox`` (any object with ``exec_code``) over HTTP.

    Use :meth:`start` / :meth:`close` inside a running loop, or ``async with``.
    """

    def __init__(
        self, sandbox: Any, config: ServerConfig | None = None, *, backend: str = ""
    ) -> None:
        self.sandbox = sandbox
        self.config = config or ServerConfig()
        self.backend = backend or str(getattr(sandbox, "name", type(sandbox).__name__))
        self.active = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str = "127.0.0.1", port: int = 8787) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEADER_BYTES)

    async def close(self) -> None:
        """Stop accepting, and end open connections (running executions are cancelled, which
        kills their sandboxes)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            for task in list(self._connections):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SandboxServer:
        if self._server is None:
            await self.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            raise RuntimeError("call start() first")
        await self._server.serve_forever()

    # ------------------------------------------------------------------ connection handling

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.config.max_connections:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    request = await asyncio.wait_for(
                        self._read_request(reader), self.config.read_timeout_s
                    )
                except TimeoutError:
                    return
                except _HttpError as exc:
                    await self._respond(writer, exc.status, {"error": str(exc)}, close=True)
                    return
                if request is None:
                    return
                method, path, headers, body = request
                status, payload = await self._route(method, path, headers, body)
                close = headers.get("connection", "").lower() == "close"
                await self._respond(writer, status, payload, close=close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # close() cancels open connections. This task is the connection's top level, so
            # ending it normally is safe, and asyncio's stream callback would otherwise log
            # the cancellation as an error.
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, str, dict[str, str], bytes] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise _HttpError(400, "incomplete request") from None
        except asyncio.LimitOverrunError:
            raise _HttpError(413, "request headers too large") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            raise _HttpError(400, "malformed request line") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _HttpError(400, "malformed header")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _HttpError(400, "chunked requests are not supported; send Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _HttpError(400, "invalid Content-Length") from None
        if length < 0 or length > self.config.max_request_bytes:
            raise _HttpError(413, f"request body over {self.config.max_request_bytes} bytes")
        body = await reader.readexactly(length) if length else b""
        return method.upper(), target.split("?", 1)[0], headers, body

    async def _respond(
        self, writer: asyncio.StreamWriter, status: int, payload: Any, *, close: bool
    ) -> None:
        body = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close" if close else "Connection: keep-alive",
        ]
        if status == 429:
            head.append("Retry-After: 1")
        if status == 401:
            head.append('WWW-Authenticate: Bearer realm="flujo-sandbox"')
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    # ------------------------------------------------------------------ routes

    async def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if path == "/healthz":
            if method != "GET":
                return 405, {"error": "use GET"}
            languages = list(getattr(self.sandbox, "languages", ("python",)))
            return 200, {
                "status": "ok",
                "backend": self.backend,
                "languages": languages,
                "active": self.active,
                "max_concurrency": self.config.max_concurrency,
            }
        if path != "/execute":
            return 404, {"error": f"no route {path}"}
        if method != "POST":
            return 405, {"error": "use POST"}
        if self.config.token is not None:
            given = headers.get("authorization", "")
            expected = f"Bearer {self.config.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return 401, {"error": "missing or wrong bearer token"}
        if self.active >= self.config.max_concurrency:
            return 429, {"error": "sandbox busy: too many executions at once"}
        # Counted before the first await, so two requests cannot both pass the check.
        self.active += 1
        try:
            return await self._execute(body)
        finally:
            self.active -= 1

    async def _execute(self, body: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(body)
        except ValueError:
            return 400, {"error": "the body is not JSON"}
        try:
            kwargs = self._parse(request)
        except SandboxLimitError as exc:
            return 422, {"error": str(exc), "error_type": "limit"}
        except (_HttpError, SandboxError) as exc:
            return 422, {"error": str(exc)}
        sandbox_id = uuid.uuid4().hex[:12]
        try:
            result = await self.sandbox.exec_code(**kwargs)
        except (SandboxFileError, SandboxLimitError, UnsupportedLanguageError) as exc:
            # error_type lets a flujo client raise the same exception the backend raised.
            kind = {
                SandboxFileError: "file",
                SandboxLimitError: "limit",
                UnsupportedLanguageError: "language",
            }[type(exc)]
            return 422, {"error": str(exc), "error_type": kind, "sandbox_id": sandbox_id}
        except UserError as exc:
            return 422, {"error": str(exc), "sandbox_id": sandbox_id}
        except SandboxError as exc:
            _log.warning("execution %s failed: %s", sandbox_id, exc)
            return 503, {"error": str(exc), "sandbox_id": sandbox_id}
        return 200, result_to_json(result, sandbox_id=sandbox_id)

    def _capped(self, asked: SandboxLimits | None) -> SandboxLimits | None:
        top = self.config.ceilings
        if top is None:
            return asked
        asked = asked or SandboxLimits()

        def low(mine: Any, theirs: Any) -> Any:
            if theirs is None:
                return mine
            return theirs if mine is None else min(mine, theirs)

        return SandboxLimits(
            memory_mb=low(top.memory_mb, asked.memory_mb),
            cpu_s=low(top.cpu_s, asked.cpu_s),
            pids=low(top.pids, asked.pids),
            output_bytes=low(top.output_bytes, asked.output_bytes),
            network=asked.network,
        )

    def _parse(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise _HttpError(422, "the body must be a JSON object")
        code = request.get("code")
        if not isinstance(code, str):
            raise _HttpError(422, "'code' must be a string")
        language = request.get("language", "python")
        if not isinstance(language, str):
            raise _HttpError(422, "'language' must be a string")
        files: dict[str, bytes] = {}
        for name, value in dict(request.get("files") or {}).items():
            # The 0.6 contract sends UTF-8 text; binary content comes as {"base64": ...}.
            if isinstance(value, str):
                files[str(name)] = value.encode("utf-8")
            elif isinstance(value, dict) and isinstance(value.get("base64"), str):
                try:
                    files[str(name)] = base64.b64decode(value["base64"], validate=True)
                except binascii.Error:
                    raise _HttpError(422, f"file {name!r}: invalid base64") from None
            else:
                raise _HttpError(422, f"file {name!r}: expected a string or {{'base64': ...}}")
        environment = request.get("environment") or {}
        if not isinstance(environment, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
        ):
            raise _HttpError(422, "'environment' must map strings to strings")
        arguments = request.get("arguments") or []
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise _HttpError(422, "'arguments' must be a list of strings")
        timeout = request.get("timeout_s")
        if timeout is None:
            timeout = self.config.default_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise _HttpError(422, "'timeout_s' must be a positive number")
        kwargs: dict[str, Any] = {
            "code": code,
            "lang": language,
            "files": files,
            "timeout_s": min(float(timeout), self.config.max_timeout_s),
            "limits": self._capped(limits_from_json(request.get("limits"))),
        }
        if environment or arguments:
            params = inspect.signature(self.sandbox.exec_code).parameters
            if "environment" not in params or "arguments" not in params:
                raise _HttpError(
                    422, f"the {self.backend} backend takes no 'environment' or 'arguments'"
                )
            kwargs["environment"] = environment
            kwargs["arguments"] = arguments
        return kwargs
