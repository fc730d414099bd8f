"""``flujo ui``: imported only when the command runs."""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket

import click

from flujo.plugin import UserError


class UiError(UserError):
    """``flujo ui`` cannot start (the port is taken, no state database): one line, exit 2."""


def _check_state() -> None:
    from flujo.plugin import current_config, open_state

    async def probe() -> None:
        # Nothing is created: a wrong folder is "no state database at ...", not an empty app.
        backend = await open_state(current_config(), create=False, read_only=True)
        await backend.close()

    asyncio.run(probe())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise UiError(f"--host {host} --port {port}: cannot listen there ({why})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port."
)
def ui(host: str, port: int) -> None:
    """Serve a local web app over the stored runs: runs, steps, plugin sections, approvals
    and pipeline charts. Approving or rejecting needs the token printed at start."""
    import uvicorn

    from flujo.plugin import current_config
    from flujo_ui.app import create_app
    from flujo_ui.security import is_loopback

    _check_state()
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    app = create_app(current_config(), token=token, port=port, bind_host=host)
    shown = f"[{host}]" if ":" in host else host
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}, not loopback: anyone who can reach it reads every "
            "stored run (approving still needs the token)",
            err=True,
        )
    click.echo(f"flujo ui: http://{shown}:{port}/login?token={token}")
    click.echo("(the link's token approves and rejects runs; Ctrl-C stops the server)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
