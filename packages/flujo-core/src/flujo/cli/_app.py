"""Building the ``flujo`` group: global options, core commands, plugin commands."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from flujo.cli._group import FlujoGroup, lazy_command
from flujo.config import FlujoConfig
from flujo.plugins.manager import PluginManager


@dataclass
class CliState:
    """Shared by the commands of one invocation: plugins are loaded once, config on demand."""

    plugins: PluginManager
    startup_error: Exception | None = None
    _config: FlujoConfig | None = field(default=None, repr=False)

    def config(self) -> FlujoConfig:
        """The validated config (raises the config error found at startup, if any)."""
        if self.startup_error is not None:
            raise self.startup_error
        if self._config is None:
            from flujo.config import load_config, share_config

            self._config = load_config(plugin_manager=self.plugins)
            # Pipelines this command imports build their agents' tools with it too.
            share_config(self._config)
            for warning in self._config.warnings:
                click.echo(f"warning: {warning}", err=True)
        return self._config


def _load_plugins() -> CliState:
    from flujo.config import PluginsSettings, read_plugins_settings
    from flujo.domain.errors import ConfigError

    settings = PluginsSettings()
    error: Exception | None = None
    try:
        settings = read_plugins_settings()[1]
    except ConfigError as exc:
        # Keep going so --help and `flujo plugins` work; commands needing config re-raise it.
        error = exc
    except Exception as exc:  # noqa: BLE001 - `flujo --help` must work whatever the file holds
        error = ConfigError(f"flujo.toml: cannot read: {type(exc).__name__}: {exc}")
    manager = PluginManager()
    # Without a readable [plugins] table we cannot know which plugins the user disabled:
    # importing one anyway would run code they turned off (failing open), so none is loaded.
    manager.load_entry_points(
        disable=settings.disable,
        hold=None if error is None else "not loaded: the configuration cannot be read",
        import_timeout_s=settings.import_timeout_s,
    )
    return CliState(manager, error)


def dump_json(value: Any) -> str:
    """JSON text for the CLI's ``--json`` output (unknown types as strings)."""
    from pydantic_core import to_json

    return to_json(value, indent=2, serialize_unknown=True).decode()


def echo_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout."""
    click.echo(dump_json(value))


def make_app() -> FlujoGroup:
    """The ``flujo`` group for this process."""
    from flujo import __version__

    state = _load_plugins()

    @click.group(cls=FlujoGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "--version", prog_name="flujo")
    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        """Flujo: typed, durable AI-agent pipelines."""
        ctx.obj = state

    assert isinstance(cli, FlujoGroup)
    cli.startup_error = state.startup_error
    cli.add_command(lazy_command("run", "flujo.cli._runs:run", help="Run a pipeline."))
    cli.add_command(
        lazy_command("runs", "flujo.cli._runs:runs", help="List, show and resume stored runs.")
    )
    cli.add_command(
        lazy_command("state", "flujo.cli._state:state", help="Manage the state database.")
    )
    cli.add_command(plugins_command)
    cli.add_command(
        lazy_command("config", "flujo.cli._config:config", help="Show the effective configuration.")
    )
    state.plugins.add_commands(cli)
    return cli


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--hook", "hook", default=None, help="Only plugins implementing this hook.")
@click.pass_obj
def plugins_command(state: CliState, as_json: bool, hook: str | None) -> None:
    """List installed plugins: loaded, broken or disabled (exits 0 even if one is broken).

    An invalid configuration is printed after the listing as one ``error:`` line, exit 2.
    """
    from flujo.domain.errors import ConfigError

    try:
        state.config()
        problem = None
    except ConfigError as exc:
        problem = str(exc)
    _list_plugins(state, as_json, hook)
    if problem is not None:
        click.echo(f"error: {problem}", err=True)
        sys.exit(2)


def _list_plugins(state: CliState, as_json: bool, hook: str | None) -> None:
    infos = state.plugins.plugins
    if hook is not None:
        from flujo.domain.errors import UserError
        from flujo.plugins.manager import hook_names

        known = hook_names()
        if hook not in known:
            raise UserError(f"--hook: no hook named {hook!r} (hooks: {', '.join(sorted(known))})")
        infos = [i for i in infos if hook in i.hooks]
    if as_json:
        echo_json([i.to_dict() for i in infos])
        return
    if not infos:
        click.echo(f"no plugin implements {hook}" if hook else "no plugins installed")
        return
    rows = [("NAME", "VERSION", "STATUS", "REGISTERED / ERROR")]
    for info in infos:
        what = (
            info.error
            or "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registered.items())
            or ", ".join(info.hooks)
        )
        rows.append((info.name, info.version or "-", info.status, what))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3])
    sys.stdout.flush()
