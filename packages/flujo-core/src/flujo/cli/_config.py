"""``flujo config show``."""

from __future__ import annotations

import click

from flujo.cli._app import CliState, echo_json


@click.group("config")
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(state: CliState, as_json: bool) -> None:
    """Print the effective configuration: file values, defaults and environment overrides."""
    cfg = state.config()
    data = cfg.to_dict()
    if as_json:
        echo_json({"path": str(cfg.path) if cfg.path else None, "config": data})
        return
    from flujo.cli._toml import dumps

    source = str(cfg.path) if cfg.path else "no flujo.toml found: defaults"
    click.echo(dumps(data, header=f"{source}\nthe effective configuration; valid as a flujo.toml"))
