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
    click.echo(f"# {cfg.path or 'no flujo.toml found; defaults'}")
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            # TOML has no null: an unset value is shown as a comment.
            click.echo(f"# {key} is unset" if value is None else f"{key} = {_toml_value(value)}")


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
