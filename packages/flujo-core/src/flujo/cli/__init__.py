"""The ``flujo`` command line.

Exit codes: 0 success; 1 a run that did not succeed (or an internal error); 2 a user error
(bad target, input, config or option), printed as one line on stderr. ``--debug`` shows
tracebacks. Plugins add commands through the ``flujo_register_commands`` hook, ideally with
:func:`lazy_command` so ``flujo --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from flujo.cli._group import FlujoGroup, LazyCommand, lazy_command
from flujo.domain.errors import FlujoError, UserError

__all__ = ["FlujoGroup", "LazyCommand", "build_cli", "current_config", "lazy_command", "main"]

if TYPE_CHECKING:
    from flujo.config import FlujoConfig


def current_config() -> FlujoConfig:
    """The validated configuration of the running ``flujo`` command, for plugin commands.

    Loaded once per invocation (with the plugins the command line loaded); a config error is
    raised here and printed by ``flujo`` as a one-line user error. Pair it with
    :func:`flujo.state.open_state` to reach the tables your plugin owns.
    """
    from flujo.cli._app import CliState

    state = click.get_current_context().find_object(CliState)
    if state is None:
        raise RuntimeError("current_config() is only available inside a flujo command")
    return state.config()


def build_cli() -> FlujoGroup:
    """The ``flujo`` click group with core commands and every loaded plugin's commands."""
    from flujo.cli._app import make_app

    return make_app()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``flujo`` script; exits the process."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="flujo: %(levelname)s: %(message)s",
    )
    try:
        cli = build_cli()
        # Without standalone mode click returns a command's `ctx.exit(code)` instead of exiting.
        code = cli.main(args=args, prog_name="flujo", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            # Ctrl-C in a command that does not handle it itself (commands that execute
            # runs do: flujo.cli._signals). One line, the shell's code for SIGINT.
            click.echo("interrupted", err=True)
            sys.exit(130)
        click.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C while plugins load, before any command runs
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every user error (click's own format adds a usage block and a blank
        # line): what is wrong, and where to read how to call the command.
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        message = " ".join(exc.format_message().splitlines())
        click.echo(f"error: {message}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FlujoError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(
            f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
