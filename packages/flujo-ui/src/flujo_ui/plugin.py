"""The hooks of flujo-ui (the module the ``flujo.plugins`` entry point names).

Imported at every flujo startup, so it imports nothing heavy: the web app, Starlette and
uvicorn are imported only when ``flujo ui`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flujo.plugin import hookimpl

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    """Own ``[ui]`` (``trace_url``)."""
    from flujo_ui.settings import SECTION, UiSettings

    return {SECTION: UiSettings}


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    """Add ``flujo ui`` (imported only when invoked)."""
    from flujo.plugin import lazy_command

    cli.add_command(
        lazy_command(
            "ui",
            "flujo_ui.commands:ui",
            help="Serve a local web app over the stored runs (flujo-ui).",
        )
    )
