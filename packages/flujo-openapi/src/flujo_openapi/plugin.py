"""The hooks of flujo-openapi (the module the ``flujo.plugins`` entry point names).

Imported at every ``flujo`` start, so it imports nothing heavy: the command is a
:func:`flujo.cli.lazy_command` resolved only when ``flujo dev`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flujo import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    """Add the ``flujo dev`` group (with ``import-openapi``)."""
    from flujo.cli import lazy_command

    cli.add_command(
        lazy_command(
            "dev",
            "flujo_openapi.cli:dev",
            help="Developer tools: import-openapi generates typed tools from an OpenAPI spec.",
        )
    )
