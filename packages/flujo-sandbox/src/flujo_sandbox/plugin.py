"""The hooks of flujo-sandbox (the module the ``flujo.plugins`` entry point names).

Imported at every Flujo startup, so it imports nothing heavy: backends, settings and the
command line are imported inside the functions below, when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flujo import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    import click
    from pydantic import BaseModel

    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import SandboxProtocol
    from flujo.plugins.hookspecs import Register
    from flujo_sandbox.settings import Backend

BACKENDS: tuple[Backend, ...] = ("local", "remote", "docker", "e2b")


def _sandbox_factory(backend: Backend) -> Callable[[FlujoConfig], SandboxProtocol]:
    def create(config: FlujoConfig) -> SandboxProtocol:
        from flujo_sandbox.factory import build_sandbox, sandbox_settings

        return build_sandbox(sandbox_settings(config), backend)

    return create


def _create_code_interpreter(config: FlujoConfig) -> Any:
    from flujo_sandbox.tool import create_tool

    return create_tool(config)


@hookimpl
def flujo_register_sandboxes(register: Register) -> None:
    for backend in BACKENDS:
        register(backend, _sandbox_factory(backend))


@hookimpl
def flujo_register_tools(register: Register) -> None:
    register("flujo.builtins.code_interpreter", _create_code_interpreter)


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    from flujo_sandbox.settings import SandboxSettings

    return {"sandbox": SandboxSettings}


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    from flujo.cli import lazy_command

    cli.add_command(
        lazy_command(
            "sandbox",
            "flujo_sandbox.cli:sandbox",
            help="Run code in a sandbox, serve the sandbox sidecar, check backends.",
        )
    )
