"""``flujo state migrate``."""

from __future__ import annotations

import asyncio

import click

from flujo.cli._app import CliState, echo_json


@click.group("state")
def state() -> None:
    """Manage the execution-state database."""


@state.command("migrate")
@click.option(
    "--from", "source_uri", required=True, help="Source URI, e.g. sqlite:///.flujo/flujo.db"
)
@click.option("--to", "dest_uri", required=True, help="Destination URI, e.g. postgresql://...")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def migrate(cli_state: CliState, source_uri: str, dest_uri: str, as_json: bool) -> None:
    """Copy runs, step results and plugin tables from one backend to another.

    The source must exist and is only read (opened read-only, nothing migrated). The
    destination is created if needed and gets every installed plugin's tables first; it must
    hold no runs yet.
    """
    from flujo.config import StateSettings
    from flujo.state import open_backend
    from flujo.state.transfer import TransferReport, copy_state

    config = cli_state.config()
    plugins = cli_state.plugins

    async def run() -> TransferReport:
        # Both through the plugin registry: a plugin's backend is a source or destination too.
        registry = plugins.registry
        source = open_backend(StateSettings(uri=source_uri), config.root, registry, what="--from")
        dest = open_backend(StateSettings(uri=dest_uri), config.root, registry, what="--to")
        await source.open(read_only=True)
        try:
            await dest.open(plugins.migrations(dest.dialect))
            try:
                report = await copy_state(
                    source,
                    dest,
                    progress=None if as_json else lambda t, n: click.echo(f"  {t}: {n} rows"),
                )
            finally:
                await dest.close()
        finally:
            await source.close()
        return report

    report = asyncio.run(run())
    if as_json:
        echo_json({"copied": report.copied, "skipped": report.skipped})
        return
    for table in report.skipped:
        click.echo(f"warning: table {table} not copied: no installed plugin owns it here", err=True)
    click.echo("done")


@state.command("upgrade")
@click.pass_obj
def upgrade(cli_state: CliState) -> None:
    """Apply pending core and plugin migrations to the existing state database.

    Read-only commands never migrate; after upgrading flujo or installing a plugin, this
    brings the database up to date without running anything.
    """
    from flujo.state import open_state

    async def run() -> None:
        backend = await open_state(cli_state.config(), create=False)
        await backend.close()

    asyncio.run(run())
    click.echo("state database is up to date")
