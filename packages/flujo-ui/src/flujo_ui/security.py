"""Who may reach the app, and who may change a run.

- **Host** (DNS rebinding): a page on ``evil.example`` whose name is re-pointed at 127.0.0.1
  reaches this server with ``Host: evil.example``. Every request must name a loopback host
  (``127.0.0.1``, ``localhost``, ``[::1]``) at this port, or the host ``--host`` named.
- **Origin**: a write (any method but GET/HEAD) sent by a browser carries ``Origin``; it must
  be this server's own.
- **Token**: approving or rejecting needs the token printed when the server starts, either
  as the ``flujo_ui_token`` cookie (set by opening the printed ``/login?token=...`` link;
  ``HttpOnly``, ``SameSite=Strict``) or typed into the form.
- **CSRF**: every form carries a CSRF value derived from the token (an HMAC); another site
  can neither read it (same-origin policy, no CORS) nor send the SameSite cookie.
- **Size**: a write's body is read before its token is checked, so anyone who reaches the
  port could make the server hold a big one: bodies over :data:`MAX_WRITE_BYTES` are refused
  (413) by their ``Content-Length``, or as they arrive when they are sent without one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

COOKIE = "flujo_ui_token"
MAX_WRITE_BYTES = 2 * 1024 * 1024
"""The largest body of a write (an answer form: a JSON answer field is at most 1 MiB)."""
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """``host`` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Guard:
    """The token and the hosts this server answers to."""

    token: str
    port: int
    bind_host: str = "127.0.0.1"
    hosts: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = set(LOOPBACK_NAMES)
        if not is_loopback(self.bind_host):
            # Named explicitly with --host: people reach the server by that name.
            names.add(f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host)
        allowed = {f"{n}:{self.port}" for n in names}
        if self.port == 80:
            allowed |= names
        object.__setattr__(self, "hosts", frozenset(allowed))

    def host_ok(self, host: str | None) -> bool:
        return host is not None and host.lower() in self.hosts

    def origin_ok(self, origin: str | None) -> bool:
        """A browser's ``Origin`` is this server (``None``: not a browser's cross-site write;
        ``"null"``: an opaque origin, refused)."""
        if origin is None:
            return True
        scheme, _, rest = origin.partition("://")
        return scheme == "http" and self.host_ok(rest)

    def token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.token.encode())

    @property
    def csrf(self) -> str:
        """The CSRF value every form carries."""
        return hmac.new(self.token.encode(), b"flujo-ui csrf", hashlib.sha256).hexdigest()

    def csrf_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.csrf.encode())


_HEADERS = [
    # No inline script or style, nothing from elsewhere: stored text can never run.
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # Not no-referrer: under it Chromium sends `Origin: null` with a same-origin form post,
    # which the Origin check must refuse. same-origin still tells other sites nothing.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class GuardMiddleware:
    """Refuses a foreign ``Host`` (every request) or ``Origin`` (writes) before any route,
    and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.guard.host_ok(headers.get("host")):
            await _refuse(send, 421, "this server answers only to its own host name")
            return
        if scope["method"] not in ("GET", "HEAD") and not self.guard.origin_ok(
            headers.get("origin")
        ):
            await _refuse(send, 403, "cross-origin request refused")
            return

        if scope["method"] not in ("GET", "HEAD"):
            length = headers.get("content-length", "")
            if length and (not length.isdigit() or int(length) > MAX_WRITE_BYTES):
                await _refuse(send, 413, "request body too large")
                return
            receive = _bounded(receive)

        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except _TooLarge:
            if not started:
                await _refuse(send, 413, "request body too large")


class _TooLarge(Exception):
    """A write's body (sent without ``Content-Length``) grew past :data:`MAX_WRITE_BYTES`."""


def _bounded(receive: Receive) -> Receive:
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_WRITE_BYTES:
                raise _TooLarge
        return message

    return bounded


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
