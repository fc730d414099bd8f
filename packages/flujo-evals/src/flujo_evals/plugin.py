"""The hooks of flujo-evals (the module the ``flujo.plugins`` entry point names).

Imported at every flujo startup, so it imports nothing heavy: evaluators, the engine, the
settings model and the commands are imported inside the hooks, when used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from flujo import hookimpl

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from flujo.application.runtime import Runtime
    from flujo.domain.events import RunFinalized
    from flujo.domain.interfaces import Migration, StateBackend
    from flujo.plugin import RunRecord, RunViewSection
    from flujo.plugins.hookspecs import Register

SERVICE = "evals"
"""The engine's name in ``runtime.services`` (``runner.services["evals"]``)."""


@hookimpl
def flujo_register_evaluators(register: Register) -> None:
    """Register ``judge``, ``json_schema``, ``regex`` and ``python``."""
    from flujo_evals import evaluators

    register("judge", evaluators.create_judge)
    register("json_schema", evaluators.create_json_schema)
    register("regex", evaluators.create_regex)
    register("python", evaluators.create_python)


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    """Own ``[eval]``."""
    from flujo_evals.settings import SECTION, EvalSettings

    return {SECTION: EvalSettings}


@hookimpl
def flujo_storage_migrations(dialect: str) -> Sequence[Migration]:
    """The ``evaluations`` table."""
    from flujo_evals.storage import migrations

    return migrations(dialect)


@hookimpl
def flujo_runtime_started(runtime: Runtime) -> None:
    """Build the engine (and its evaluators) when ``[eval] enabled``; bad settings fail here."""
    from flujo_evals.engine import build_engine
    from flujo_evals.settings import SECTION, EvalSettings

    if not runtime.config.section(SECTION, EvalSettings).enabled:
        return
    # Unknown evaluators, missing rubric files and bad settings fail the runner's start here.
    runtime.services[SERVICE] = build_engine(
        runtime.config, runtime.state, runtime.tasks, runtime=runtime
    )


@hookimpl
def flujo_run_finalized(event: RunFinalized, runtime: Runtime) -> None:
    """Take the sampling decisions and queue the jobs; never waits, never raises."""
    engine = runtime.services.get(SERVICE)
    if engine is not None:
        engine.on_run_finalized(event.run)


@hookimpl
def flujo_run_view(run: RunRecord, state: StateBackend) -> Awaitable[RunViewSection | None]:
    """The run's evaluations, for ``flujo runs show``."""
    from flujo_evals.storage import run_view

    return run_view(state, run.run_id)


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    """Add ``flujo evals`` (imported only when invoked)."""
    from flujo.cli import lazy_command

    cli.add_command(
        lazy_command(
            "evals",
            "flujo_evals.commands:evals",
            help="List, show, summarize and backfill evaluations of runs (flujo-evals).",
        )
    )
