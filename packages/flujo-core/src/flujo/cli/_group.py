"""A click group whose commands may be imported only when invoked."""

from __future__ import annotations

import importlib

import click

from flujo.domain.errors import PluginError


class LazyCommand(click.Command):
    """Stands in for a command importable as ``module:attr`` until it is invoked."""

    def __init__(self, name: str, target: str, *, help: str) -> None:
        super().__init__(name, help=help, short_help=help)
        self.target = target

    def resolve(self) -> click.Command:
        """Import the real command (a :class:`PluginError` if that fails)."""
        module, _, attr = self.target.partition(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                module.split(".")[0],
                f"cannot load command {self.name!r} from {self.target!r}: {exc}",
            ) from exc
        if not isinstance(command, click.Command):
            raise PluginError(module.split(".")[0], f"{self.target!r} is not a click command")
        return command


def lazy_command(name: str, target: str, *, help: str) -> LazyCommand:
    """A command ``name`` whose implementation, ``"module:attr"``, is imported on first use.

    ``help`` is shown by ``flujo --help`` without importing anything::

        @hookimpl
        def flujo_register_commands(cli):
            cli.add_command(lazy_command("memory", "flujo_memory.cli:memory", help="..."))
    """
    return LazyCommand(name, target, help=help)


class FlujoGroup(click.Group):
    """A group that resolves :class:`LazyCommand` entries when they are looked up to run.

    ``startup_error``: why plugins (and so their commands) were not loaded. A command that
    is not found raises it, so ``flujo memory ...`` with a broken flujo.toml names the file
    instead of saying there is no ``memory`` command; ``--help`` shows it below the list.
    """

    startup_error: Exception | None = None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self.startup_error is not None:
            raise self.startup_error
        if isinstance(command, LazyCommand):
            command = command.resolve()
            self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing must not import lazy commands: use the help given at registration.
        rows = [
            (name, cmd.get_short_help_str(formatter.width - 6 - len(name)))
            for name, cmd in sorted(self.commands.items())
            if not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
        if self.startup_error is not None:
            with formatter.section("Plugins not loaded"):
                formatter.write_text(str(self.startup_error))
