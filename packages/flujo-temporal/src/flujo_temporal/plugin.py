"""flujo-temporal's hooks: the ``temporal`` engine, the ``[temporal]`` section and the
``flujo temporal`` commands. Nothing heavy is imported here (``flujo --help`` stays fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flujo.plugin import hookimpl, lazy_command

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import Engine
    from flujo.plugin import RegisterEngines


def _temporal_engine(config: FlujoConfig) -> Engine:
    from flujo_temporal.engine import temporal_engine

    return temporal_engine(config)


@hookimpl
def flujo_register_engines(register: RegisterEngines) -> None:
    """``temporal``: runs are Temporal workflows, steps their activities."""
    register("temporal", _temporal_engine)


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    from flujo_temporal.config import TemporalSettings

    return {"temporal": TemporalSettings}


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    cli.add_command(
        lazy_command("temporal", "flujo_temporal.cli:temporal", help="Run pipelines on Temporal.")
    )
