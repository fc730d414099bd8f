"""``flujo sandbox exec | serve | doctor`` (imported only when ``flujo sandbox`` runs)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from typing import Any

import click

from flujo.cli import current_config
from flujo.domain.errors import UserError
from flujo_sandbox._common import clean_token, result_to_json
from flujo_sandbox.errors import SandboxUnavailableError
from flujo_sandbox.factory import AUTO, check_backend, configured_sandbox, sandbox_settings

__all__ = ["sandbox"]


class CliUsageError(UserError):
    """A bad command-line value (printed as one line, exit 2)."""


@click.group("sandbox")
def sandbox() -> None:
    """Run code in a sandbox, serve the sandbox sidecar, check backends."""


@sandbox.command("exec")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--backend",
    help="Any registered sandbox name (default: [sandbox] backend); `flujo plugins` lists them.",
)
@click.option("--lang", default="python", show_default=True, help="python or bash.")
@click.option("--timeout", "timeout_s", type=float, help="Seconds (default: [sandbox] timeout_s).")
@click.option("--json", "as_json", is_flag=True, help="Print the ExecutionResult as JSON.")
def exec_(
    source: str, backend: str | None, lang: str, timeout_s: float | None, as_json: bool
) -> None:
    """Run the code in SOURCE (a file, or - for stdin) and exit with its exit status."""
    if timeout_s is not None and timeout_s <= 0:
        raise CliUsageError("--timeout must be positive")
    try:
        if source == "-":
            code = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as fh:
                code = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliUsageError(f"cannot read {source}: {exc}") from None
    box = configured_sandbox(current_config(), backend)
    result = asyncio.run(_exec_once(box, code, lang, timeout_s))
    if as_json:
        click.echo(json.dumps(result_to_json(result), indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        if result.timed_out:
            sys.stderr.write(f"\n[sandbox] timed out after {result.limits.get('timeout_s')}s\n")
        if result.error:
            sys.stderr.write(f"\n[sandbox] error: {result.error}\n")
        sys.stderr.flush()
    if result.timed_out:
        raise SystemExit(124)  # the status `timeout(1)` uses
    if result.exit_code is None:
        raise SystemExit(1)
    raise SystemExit(result.exit_code if 0 <= result.exit_code < 256 else 1)


async def _exec_once(box: Any, code: str, lang: str, timeout_s: float | None) -> Any:
    try:
        return await box.exec_code(code, lang, timeout_s=timeout_s)
    finally:
        # Backends holding connections or sessions (remote, e2b) release them before the
        # loop closes.
        close = getattr(box, "aclose", None)
        if close is not None:
            await close()


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--backend",
    default="local",
    show_default=True,
    help="Registered sandbox that runs the code (any but remote; `flujo plugins` lists them).",
)
@click.option(
    "--token-env",
    help="Environment variable holding the bearer token callers must send (default: "
    "[sandbox] token_env, if that variable is set; otherwise a token is generated and printed).",
)
@click.option(
    "--no-token",
    is_flag=True,
    help="Accept callers without a token (loopback only): any local process can then run code.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also accept this Host name (repeatable; '*' for any). Loopback names and the "
    "bound address are always accepted.",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Let web pages from this origin (scheme://host[:port]) call (repeatable). Requests "
    "from other web pages are refused.",
)
@click.option("--max-concurrency", default=4, show_default=True, type=int, help="Then 429.")
@click.option(
    "--max-connections",
    default=256,
    show_default=True,
    type=int,
    help="Open connections at once (idle ones give way to new ones).",
)
def serve(
    host: str,
    port: int,
    backend: str,
    token_env: str | None,
    no_token: bool,
    allow_hosts: tuple[str, ...],
    allow_origins: tuple[str, ...],
    max_concurrency: int,
    max_connections: int,
) -> None:
    """Serve the remote sandbox contract (POST /execute, GET /healthz) over a local backend.

    A bearer token is always required unless --no-token: from --token-env, else from the
    variable [sandbox] token_env names (FLUJO_SANDBOX_TOKEN), else a new one printed at start.
    """
    from flujo_sandbox.local import probe
    from flujo_sandbox.server import ServerConfig

    if not 0 <= port <= 65535:
        raise CliUsageError(f"--port {port}: expected 0 to 65535")
    if max_concurrency < 1:
        raise CliUsageError("--max-concurrency must be at least 1")
    if max_connections < max_concurrency:
        raise CliUsageError("--max-connections must be at least --max-concurrency")
    allow_origins = tuple(origin.rstrip("/") for origin in allow_origins)
    for origin in allow_origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise CliUsageError(
                f"--allow-origin {origin!r}: expected scheme://host[:port], e.g. "
                "http://localhost:3000"
            )
    if backend == "remote":
        raise CliUsageError(
            "--backend remote would forward to another sandbox service; name a sandbox that "
            "runs code on this machine (local, docker, e2b or another plugin's)"
        )
    settings = sandbox_settings(current_config())
    token: str | None
    generated = False
    if no_token:
        if token_env is not None:
            raise CliUsageError("--no-token and --token-env contradict each other")
        if not _is_loopback(host):
            # Anyone who can reach the port could run code: never without a token off loopback.
            raise CliUsageError(
                f"refusing --no-token on {host}: without a token anyone who can reach the "
                "port runs code; bind 127.0.0.1 or drop --no-token"
            )
        token = None
    elif token_env is not None:
        token = clean_token(os.environ.get(token_env), f"--token-env {token_env}")
        if not token:
            # Fail closed: asked for a token and none is there; never serve without one.
            raise CliUsageError(f"--token-env {token_env}: the variable is not set or empty")
    else:
        token = clean_token(
            os.environ.get(settings.token_env), f"{settings.token_env} ([sandbox] token_env)"
        )
        if token is None:
            # Like notebook servers: secure by default, and the token is shown once.
            token = secrets.token_urlsafe(32)
            generated = True
    if backend == "local":
        report = probe(settings)
        if not report.ok:
            raise SandboxUnavailableError(
                "local sandbox unavailable: " + "; ".join(report.problems)
            )
    box = configured_sandbox(current_config(), backend)
    ceilings = None
    if backend == "local":
        from flujo_sandbox.local import LocalSandbox

        ceilings = LocalSandbox(settings).default_limits()
    config = ServerConfig(
        ceilings=ceilings,
        max_concurrency=max_concurrency,
        max_connections=max_connections,
        token=token,
        max_timeout_s=settings.max_timeout_s,
        default_timeout_s=settings.timeout_s,
        allowed_hosts=frozenset(allow_hosts),
        allowed_origins=frozenset(allow_origins),
    )
    notice = None
    if generated:
        notice = (
            f"generated bearer token (callers set {settings.token_env}={token}; "
            f"to choose your own, set {settings.token_env} or pass --token-env)"
        )
    asyncio.run(_serve(box, config, host, port, backend, notice))


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(
    box: Any, config: Any, host: str, port: int, backend: str, notice: str | None
) -> None:
    from flujo_sandbox.server import SandboxServer

    server = SandboxServer(box, config, backend=backend)
    try:
        await server.start(host, port)
    except OSError as exc:
        raise CliUsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    auth = "bearer token required" if config.token else "NO TOKEN"
    click.echo(
        f"flujo sandbox serving {backend} on http://{shown}:{server.port} "
        f"(max concurrency {config.max_concurrency}, {auth})",
    )
    if notice is not None:
        click.echo(notice)
    if config.token is None:
        click.echo(
            "WARNING: --no-token: every process on this machine can run code through this "
            "sidecar (web pages are still refused by the Host/Origin checks)",
            err=True,
        )
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


@sandbox.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(as_json: bool) -> None:
    """Report which backends can run on this machine, and why (not)."""
    settings = sandbox_settings(current_config())
    if settings.backend not in (AUTO, "remote"):
        # An unknown name is a config error; auto and remote are reported on, not refused:
        # saying what is missing is this command's job.
        check_backend(current_config())
    report = _doctor_report(settings)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"configured backend: {_configured(report)}")
    for name, entry in report["backends"].items():
        status = "available" if entry["available"] else "unavailable"
        click.echo(f"{name:8} {status}")
        for line in entry["notes"]:
            click.echo(f"         - {line}")


def _doctor_report(settings: Any) -> dict[str, Any]:
    import importlib.util

    from flujo_sandbox.local import probe

    local = probe(settings, refresh=True)
    notes = list(local.problems)
    if local.ok:
        d = local.details
        uid_note = (
            f"bubblewrap starts as uid {d['run_as_uid']} via setpriv (host runs as root)"
            if d["euid"] == 0
            else f"bubblewrap runs as uid {d['euid']}"
        )
        notes += [
            f"bubblewrap {d['bwrap']}; languages: {', '.join(local.languages)}",
            uid_note + "; process, memory, CPU and file-size limits bind",
            f"python inside the sandbox: {d['python']}",
            (
                f"totals per execution (memory, processes): {d['cgroups_note']}"
                if d.get("cgroups")
                else f"no totals per execution, per-process rlimits only: {d.get('cgroups_note')}"
            ),
        ]
    backends: dict[str, Any] = {
        "local": {"available": local.ok, "notes": notes, "details": local.details}
    }
    if settings.api_url:
        backends["remote"] = {"available": True, "notes": [f"api_url {settings.api_url}"]}
    else:
        backends["remote"] = {"available": False, "notes": ["[sandbox] api_url is not set"]}
    docker_lib = importlib.util.find_spec("docker") is not None
    backends["docker"] = {
        "available": docker_lib,
        "notes": [
            "docker SDK installed; needs a reachable Docker daemon at run time"
            if docker_lib
            else "pip install 'flujo-sandbox[docker]'"
        ],
    }
    e2b_lib = importlib.util.find_spec("e2b_code_interpreter") is not None
    key = bool(os.environ.get(settings.e2b_api_key_env))
    backends["e2b"] = {
        "available": e2b_lib and key,
        "notes": [
            ("e2b-code-interpreter installed" if e2b_lib else "pip install 'flujo-sandbox[e2b]'"),
            (f"{settings.e2b_api_key_env} is set" if key else f"{settings.e2b_api_key_env} unset"),
        ],
    }
    chosen: str | None = settings.backend
    if chosen == AUTO:
        # What `auto` resolves to, by the rule auto_backend() applies.
        chosen = "remote" if settings.api_url else ("local" if local.ok else None)
    return {"configured": settings.backend, "chosen": chosen, "backends": backends}


def _configured(report: dict[str, Any]) -> str:
    configured, chosen = report["configured"], report["chosen"]
    if configured != AUTO:
        return str(configured)
    if chosen is None:
        return (
            "auto (none available: install bubblewrap, or set [sandbox] backend and what it needs)"
        )
    return f"auto (uses {chosen})"
