"""``flujo example-hello``: imported only when the command runs (see ``plugin.py``)."""

from __future__ import annotations

import click


@click.command("example-hello")
@click.option("--name", default="world", show_default=True, help="Who to greet.")
def hello(name: str) -> None:
    """Print a greeting (from flujo-plugin-example)."""
    click.echo(f"Hello, {name}! (from flujo-plugin-example)")
