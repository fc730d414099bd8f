"""The sidecar: ``flujo sandbox serve`` serves the remote contract over a local backend.

A deliberately small HTTP/1.1 server on :mod:`asyncio` streams (no web framework to install
beside the app): ``POST /execute`` runs code, ``GET /healthz`` answers liveness.

What a caller who is not allowed in can cost it is bounded before anything else happens: a
request is judged on its head alone (``Host``, ``Origin``, route, bearer token, size, free
execution slots) and refused *without reading its body*, so clients without the token cannot
make it buffer bodies; idle and slow connections time out; and at the connection cap the
oldest connection that is not serving an accepted request is dropped to make room, so idle
connections cannot lock out callers that have the token. Requests over the concurrency cap
get ``429`` at once rather than queueing. Every request gets an answer: a request that cannot
be understood is a ``4xx`` naming the field, and anything unexpected a ``500``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import inspect
import ipaddress
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from flujo.domain.errors import UserError
from flujo.domain.interfaces import SandboxLimits
from flujo_sandbox._common import check_text, limits_from_json, result_to_json
from flujo_sandbox.errors import (
    SandboxError,
    SandboxFileError,
    SandboxLimitError,
    SandboxRequestError,
    UnsupportedLanguageError,
)

__all__ = ["SandboxServer", "ServerConfig"]

_log = logging.getLogger("flujo_sandbox.server")

MAX_HEADER_BYTES = 16 * 1024
LINGER_BYTES = 256 * 1024
"""After refusing a request whose body was not read, at most this much of what the client
still sends is read and thrown away before closing, so the refusal is not lost to a reset."""
LINGER_S = 2.0
"""...and for at most this long."""

_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]{1,20}")
_SINGLE = frozenset({"host", "content-length", "authorization", "origin", "transfer-encoding"})
"""Headers that must not repeat: two values would leave it ambiguous which one was checked."""
LOOPBACK_NAMES = frozenset({"localhost"})
"""Host names always accepted (IP literals of loopback addresses are accepted too)."""

ExecFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How the sidecar behaves."""

    max_concurrency: int = 4
    """Executions at once; more get ``429``."""
    token: str | None = None
    """Bearer token every ``/execute`` must carry; ``None`` accepts any caller that passes the
    ``Host``/``Origin`` checks (``flujo sandbox serve`` generates one unless ``--no-token``)."""
    max_request_bytes: int = 32 * 1024 * 1024
    """Larger request bodies get ``413`` (judged from ``Content-Length``, before reading)."""
    max_timeout_s: float = 300.0
    """``timeout_s`` of a request is capped to this."""
    default_timeout_s: float = 30.0
    """``timeout_s`` when a request gives none."""
    idle_timeout_s: float = 15.0
    """A connection must deliver a complete request head within this many seconds of opening
    (or of the previous response); otherwise it is closed (idle and slow-header clients)."""
    body_timeout_s: float = 60.0
    """How long an accepted request may take to send its body (then ``408``)."""
    write_timeout_s: float = 60.0
    """How long a client may take to receive a response before the connection is dropped."""
    max_connections: int = 256
    """Open connections at once. At the cap a new connection replaces the oldest one that is
    not serving an accepted request (idle, reading a head, or being refused); only when every
    connection is serving one does the newcomer get ``503``."""
    allowed_hosts: frozenset[str] = frozenset()
    """``Host`` names accepted besides loopback ones and the bound address (``"*"``: any).
    The check defeats DNS rebinding: a web page whose name re-resolves to 127.0.0.1 still
    sends its own name as ``Host``."""
    allowed_origins: frozenset[str] = frozenset()
    """Browser origins (``scheme://host[:port]``) allowed to call; any other request carrying
    an ``Origin`` header (i.e. from a web page) is refused with ``403``."""
    ceilings: SandboxLimits | None = None
    """The most a request may ask for: requested ``memory_mb``, ``cpu_s``, ``pids`` and
    ``output_bytes`` above these are lowered to them, and unset ones take them. A caller can
    only tighten the sidecar's limits."""


class _HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass(slots=True)
class _Head:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    length: int


@dataclass(slots=True)
class _Conn:
    writer: asyncio.StreamWriter
    busy: bool = False
    """Serving a request that passed every check: never dropped to make room."""


@dataclass(slots=True)
class _Reply:
    status: int
    payload: Any
    close: bool = False
    headers: dict[str, str] = field(default_factory=dict)


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        """Connections counted against the cap, oldest first."""
        # Given as NAME or NAME:PORT, compared as the bare name (like the Host header).
        self._host_names: set[str] = {_host_name(n) for n in self.config.allowed_hosts}
        self._host_names |= LOOPBACK_NAMES
        self._bind_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self._origins = {_origin_key(o) for o in self.config.allowed_origins}
        self._token = self.config.token.encode("utf-8") if self.config.token else None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Connections open now (counted against ``max_connections``)."""
        return len(self._conns)

    async def start(self, host: str = "127.0.0.1", port: int = 8787) -> None:
        """Bind and start accepting connections (``Host: <host>`` is then accepted too)."""
        try:
            self._bind_ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            self._host_names.add(host.lower())
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=MAX_HEADER_BYTES, backlog=512
        )

    async def close(self) -> None:
        """Stop accepting, and end open connections (running executions are cancelled, which
        kills their sandboxes)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
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

    def _admit(self, conn: _Conn) -> bool:
        if len(self._conns) < self.config.max_connections:
            return True
        for task, other in self._conns.items():  # oldest first
            if not other.busy:
                # Idle, still sending its head, or being refused: it has shown no token yet
                # (or is between requests), so it gives way to the newcomer.
                del self._conns[task]
                other.writer.transport.abort()
                return True
        return False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a stream callback always runs as a task
        conn = _Conn(writer)
        if not self._admit(conn):
            # Every connection is serving an accepted request: this one waits for nothing.
            writer.write(_encode(_Reply(503, {"error": "too many connections"}, close=True)))
            writer.close()
            return
        self._conns[task] = conn
        self._tasks.add(task)
        try:
            while True:
                # An accepted request stays protected from eviction until its answer is sent.
                conn.busy = False
                reply, head = await self._serve_one(reader, conn)
                if reply is None:
                    return
                await self._send(writer, reply)
                if reply.close:
                    if head is None or head.length:
                        await self._linger(reader, writer)
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # close() cancels open connections. This task is the connection's top level, so
            # ending it normally is safe, and asyncio's stream callback would otherwise log
            # the cancellation as an error.
            return
        finally:
            self._conns.pop(task, None)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_one(
        self, reader: asyncio.StreamReader, conn: _Conn
    ) -> tuple[_Reply | None, _Head | None]:
        """Read, judge and answer one request; ``None`` when the client closed or timed out
        while idle. The body is read only once the head passed every check."""
        try:
            async with asyncio.timeout(self.config.idle_timeout_s):
                head = await self._read_head(reader)
        except TimeoutError:
            return None, None
        except _HttpError as exc:
            return _Reply(exc.status, {"error": str(exc)}, close=True), None
        if head is None:
            return None, None
        try:
            reply = await self._judge(head, reader, conn)
        except _HttpError as exc:
            reply = _Reply(exc.status, {"error": str(exc), **exc.extra}, close=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            raise  # the client went away mid-request: nobody to answer
        except Exception:  # noqa: BLE001 - the caller always gets an answer
            _log.exception("unexpected error serving %s %s", head.method, head.path[:100])
            reply = _Reply(500, {"error": "internal error in the sandbox service"}, close=True)
        if head.version == "HTTP/1.0" or head.headers.get("connection", "").lower() == "close":
            reply.close = True
        origin = head.headers.get("origin")
        if origin is not None and _origin_key(origin) in self._origins:
            reply.headers["Access-Control-Allow-Origin"] = origin
            reply.headers["Vary"] = "Origin"
        return reply, head

    async def _judge(self, head: _Head, reader: asyncio.StreamReader, conn: _Conn) -> _Reply:
        self._check_host(head.headers.get("host"))
        origin = head.headers.get("origin")
        if origin is not None and _origin_key(origin) not in self._origins:
            raise _HttpError(
                403,
                f"requests from web pages (Origin {origin[:100]!r}) are refused; "
                "allow an origin with `flujo sandbox serve --allow-origin`",
            )
        if head.method == "OPTIONS" and origin is not None:
            return _Reply(
                204,
                None,
                close=bool(head.length),
                headers={
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                },
            )
        if head.path == "/healthz":
            if head.method != "GET":
                raise _HttpError(405, "use GET")
            languages = list(getattr(self.sandbox, "languages", ("python",)))
            payload = {
                "status": "ok",
                "backend": self.backend,
                "languages": languages,
                "active": self.active,
                "max_concurrency": self.config.max_concurrency,
            }
            return _Reply(200, payload, close=bool(head.length))
        if head.path != "/execute":
            raise _HttpError(404, f"no route {head.path[:100]}")
        if head.method != "POST":
            raise _HttpError(405, "use POST")
        self._check_token(head.headers.get("authorization"))
        if head.length > self.config.max_request_bytes:
            raise _HttpError(413, f"request body over {self.config.max_request_bytes} bytes")
        if self.active >= self.config.max_concurrency:
            raise _HttpError(429, "sandbox busy: too many executions at once")
        # Counted before the first await, so two requests cannot both pass the check; from
        # here on the connection serves an accepted request and is never dropped for room.
        self.active += 1
        conn.busy = True
        try:
            if head.headers.get("expect", "").lower() == "100-continue":
                conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                async with asyncio.timeout(self.config.body_timeout_s):
                    body = await reader.readexactly(head.length) if head.length else b""
            except TimeoutError:
                raise _HttpError(408, "the request body did not arrive in time") from None
            status, payload = await self._execute(body)
            return _Reply(status, payload)
        finally:
            self.active -= 1

    def _check_host(self, host: str | None) -> None:
        if host is None:
            raise _HttpError(400, "missing Host header")
        name = _host_name(host)
        if name in self._host_names or "*" in self._host_names:
            return
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        # An IP literal cannot be a rebinding attack (that needs a name the attacker's DNS
        # answers for); loopback ones always, others when bound to them or to all addresses.
        if ip is not None and (
            ip.is_loopback
            or (self._bind_ip is not None and (ip == self._bind_ip or self._bind_ip.is_unspecified))
        ):
            return
        raise _HttpError(
            403,
            f"Host {host[:100]!r} is not allowed (DNS rebinding protection); add it with "
            "`flujo sandbox serve --allow-host NAME`",
        )

    def _check_token(self, given: str | None) -> None:
        if self._token is None:
            return
        scheme, _, credentials = (given or "").partition(" ")
        presented = credentials.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(presented, self._token):
            raise _HttpError(401, "missing or wrong bearer token")

    async def _read_head(self, reader: asyncio.StreamReader) -> _Head | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise _HttpError(400, "incomplete request") from None
        except asyncio.LimitOverrunError:
            raise _HttpError(431, "request headers too large") from None
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _HttpError(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _HttpError(505, "only HTTP/1.1 and HTTP/1.0 are served")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN_CHARS.fullmatch(name):
                raise _HttpError(400, "malformed header")
            key = name.lower()
            if key in headers:
                if key in _SINGLE:
                    raise _HttpError(400, f"duplicate {name} header")
                headers[key] += ", " + value.strip()
            else:
                headers[key] = value.strip()
        if "transfer-encoding" in headers:
            raise _HttpError(411, "chunked requests are not supported; send Content-Length")
        length_text = headers.get("content-length", "0")
        if not _DIGITS.fullmatch(length_text):
            raise _HttpError(400, "invalid Content-Length")
        return _Head(method.upper(), target.split("?", 1)[0], version, headers, int(length_text))

    async def _send(self, writer: asyncio.StreamWriter, reply: _Reply) -> None:
        writer.write(_encode(reply))
        try:
            async with asyncio.timeout(self.config.write_timeout_s):
                await writer.drain()
        except TimeoutError:
            # The client does not read its answer: drop it rather than hold the connection.
            writer.transport.abort()
            raise ConnectionResetError("the client did not read its response") from None

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then read and discard (a bounded amount of) what the client is still
        sending: closing with unread data would reset the connection, and a reset can destroy
        the refusal before the client reads it."""
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        drained = 0
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_S):
                while drained < LINGER_BYTES:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return
                    drained += len(chunk)

    # ------------------------------------------------------------------ routes

    async def _execute(self, body: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            return 400, {"error": "the body is not JSON"}
        try:
            kwargs = self._parse(request)
        except SandboxLimitError as exc:
            return 422, {"error": str(exc), "error_type": "limit"}
        except SandboxRequestError as exc:
            return 422, {"error": str(exc), "error_type": "request"}
        except (_HttpError, SandboxError) as exc:
            return 422, {"error": str(exc)}
        sandbox_id = uuid.uuid4().hex[:12]
        try:
            result = await self.sandbox.exec_code(**kwargs)
        except (
            SandboxFileError,
            SandboxLimitError,
            SandboxRequestError,
            UnsupportedLanguageError,
        ) as exc:
            # error_type lets a flujo client raise the same exception the backend raised.
            kind = {
                SandboxFileError: "file",
                SandboxLimitError: "limit",
                SandboxRequestError: "request",
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
        """The keyword arguments of ``exec_code`` from a request, every field checked: a wrong
        type, NaN, a lone surrogate or a NUL where a command line needs text raises a
        ``SandboxError`` naming the field (answered ``422``), never anything else."""
        if not isinstance(request, dict):
            raise _HttpError(422, "the body must be a JSON object")
        code = check_text(request.get("code"), "'code'")
        language = request.get("language")
        language = "python" if language is None else check_text(language, "'language'")
        files: dict[str, bytes] = {}
        raw_files = request.get("files") or {}
        if not isinstance(raw_files, dict):
            raise SandboxRequestError("'files' must be an object mapping names to contents")
        for name, value in raw_files.items():
            shown = repr(name[:100])
            check_text(name, f"file name {shown}", nul=False)
            # The 0.6 contract sends UTF-8 text; binary content comes as {"base64": ...}.
            if isinstance(value, str):
                files[name] = check_text(value, f"file {shown}").encode("utf-8")
            elif isinstance(value, dict) and isinstance(value.get("base64"), str):
                try:
                    files[name] = base64.b64decode(value["base64"], validate=True)
                except ValueError:  # binascii.Error, or non-ASCII characters
                    raise SandboxRequestError(f"file {shown}: invalid base64") from None
            else:
                raise SandboxRequestError(f"file {shown}: expected a string or {{'base64': ...}}")
        environment = request.get("environment") or {}
        if not isinstance(environment, dict):
            raise SandboxRequestError("'environment' must map strings to strings")
        for key, value in environment.items():
            check_text(key, "'environment' names", nul=False)
            check_text(value, f"'environment' value of {key[:100]!r}", nul=False)
        arguments = request.get("arguments") or []
        if not isinstance(arguments, list):
            raise SandboxRequestError("'arguments' must be a list of strings")
        for i, arg in enumerate(arguments):
            check_text(arg, f"'arguments'[{i}]", nul=False)
        timeout = request.get("timeout_s")
        if timeout is None:
            timeout = self.config.default_timeout_s
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise SandboxLimitError("'timeout_s' must be a positive, finite number of seconds")
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


def _host_name(host: str) -> str:
    """The name in a ``Host`` value, lower-cased, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name
    return host


def _origin_key(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def _encode(reply: _Reply) -> bytes:
    body = b"" if reply.status == 204 else json.dumps(reply.payload).encode()
    head = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close" if reply.close else "Connection: keep-alive",
    ]
    if reply.status == 429:
        head.append("Retry-After: 1")
    if reply.status == 401:
        head.append('WWW-Authenticate: Bearer realm="flujo-sandbox"')
    head += [f"{name}: {value}" for name, value in reply.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
