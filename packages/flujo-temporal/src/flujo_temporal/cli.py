"""``flujo temporal worker``."""

from __future__ import annotations

import asyncio
import signal

import click

from flujo.plugin import current_config


@click.group("temporal")
def temporal() -> None:
    """Run Flujo pipelines on Temporal."""


@temporal.command("worker")
@click.option(
    "--task-queue", default=None, help="The task queue to poll (default: [temporal] task_queue)."
)
def worker_command(task_queue: str | None) -> None:
    """Execute submitted runs until SIGINT/SIGTERM (steps in progress finish first)."""
    from flujo_temporal.config import TemporalSettings
    from flujo_temporal.worker import worker

    config = current_config()
    settings = config.section("temporal", TemporalSettings)
    queue = task_queue or settings.task_queue

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with worker(config, task_queue=queue):
            click.echo(
                f"worker polling task queue {queue!r} on {settings.address} "
                f"(namespace {settings.namespace!r})",
                err=True,
            )
            await stop.wait()
        click.echo("worker stopped", err=True)

    asyncio.run(main())
    _exit_now()


@temporal.command("cancel")
@click.argument("run_id")
def cancel_command(run_id: str) -> None:
    """Cancel run RUN_ID on Temporal: its step in progress is cancelled, the run stored failed."""
    from flujo_temporal.config import TemporalSettings
    from flujo_temporal.engine import cancel, workflow_id

    settings = current_config().section("temporal", TemporalSettings)
    asyncio.run(cancel(settings, run_id))
    click.echo(f"run {run_id}: cancel requested (workflow {workflow_id(run_id)})")
    _exit_now()


def _exit_now() -> None:
    """Exit 0 at once, the command's work done: the Temporal SDK's native threads can crash
    the interpreter's teardown (seen once here as SIGSEGV after a successful cancel), which
    would report a done command as failed."""
    import logging
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)
