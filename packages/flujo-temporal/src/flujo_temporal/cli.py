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
