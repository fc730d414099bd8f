"""The hooks of flujo-memory (the module the ``flujo.plugins`` entry point names).

Imported by every ``flujo`` process, so it imports nothing heavy: stores, embedders, numpy and
qdrant load only when memory is actually used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from flujo import hookimpl

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from flujo.application.runtime import Runtime
    from flujo.domain.events import StepCompleted
    from flujo.domain.interfaces import Migration, Retriever, StepCommit
    from flujo.plugin import FlujoConfig, RunRecord, RunViewSection, StateBackend
    from flujo.plugins.hookspecs import Register

SERVICE = "memory"
"""``runner.services["memory"]`` is this plugin's :class:`~flujo_memory.service.MemoryService`."""


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    """Own the ``[memory]`` section."""
    from flujo_memory.settings import SECTION, MemorySettings

    return {SECTION: MemorySettings}


@hookimpl
def flujo_register_vector_stores(register: Register) -> None:
    """Register the ``qdrant``, ``memory``, ``chroma`` and ``pgvector`` stores."""
    from flujo_memory import factories

    register("qdrant", factories.qdrant_store)
    register("memory", factories.memory_store)
    register("chroma", factories.chroma_store)
    register("pgvector", factories.pgvector_store)


@hookimpl
def flujo_register_embedders(register: Register) -> None:
    """Register the ``wordllama`` (default), ``hashing``, ``openai`` and ``fastembed``
    embedders."""
    from flujo_memory import factories

    register("wordllama", factories.wordllama_embedder)
    register("hashing", factories.hashing_embedder)
    register("openai", factories.openai_embedder)
    register("fastembed", factories.fastembed_embedder)


@hookimpl
def flujo_storage_migrations(dialect: str) -> Sequence[Migration]:
    """The outbox table in the state database."""
    from flujo_memory.outbox import migrations

    return migrations(dialect)


@hookimpl
def flujo_runtime_started(runtime: Runtime) -> None:
    """Attach ``runner.services["memory"]`` and resume a previous process's outbox."""
    from flujo_memory.service import MemoryService

    service = MemoryService(
        runtime.config,
        runtime.state,
        registry=runtime.plugins.registry,
        tasks=runtime.tasks,
        scrubbing=runtime.scrubbing,
        runtime=runtime,
    )
    service.validate_names()
    runtime.services[SERVICE] = service
    # Rows a crashed or cancelled process left behind are indexed now, in the background.
    runtime.tasks.schedule("flujo-memory.resume", service.resume)


@hookimpl
def flujo_retriever(runtime: Runtime) -> Retriever:
    """Serve ``context.retrieve()`` from this runner's memory service."""
    from flujo_memory.service import MemoryRetriever, MemoryService

    def service() -> MemoryService:
        found: MemoryService = runtime.services[SERVICE]
        return found

    return MemoryRetriever(service)


@hookimpl
def flujo_step_commit(event: StepCompleted, commit: StepCommit, runtime: Runtime) -> None:
    """Add a matching successful step's output to the outbox, in the step's own commit."""
    service = runtime.services.get(SERVICE)
    if service is not None:
        service.on_step_commit(event, commit)


@hookimpl
def flujo_step_completed(event: StepCompleted, runtime: Runtime) -> None:
    """The step (and its outbox row) is committed: schedule the indexer (no I/O wait)."""
    service = runtime.services.get(SERVICE)
    if service is not None:
        service.on_step_completed(event)


@hookimpl
def flujo_runtime_closing(runtime: Runtime) -> None:
    """Schedule the final flush (and the store's close) before the runner drains."""
    service = runtime.services.get(SERVICE)
    if service is not None:
        runtime.tasks.schedule("flujo-memory.close", service.flush_and_close)


@hookimpl
def flujo_run_view(
    run: RunRecord, state: StateBackend, config: FlujoConfig
) -> Awaitable[RunViewSection | None]:
    """What the run wrote to memory, for ``flujo runs show``."""
    from flujo_memory.view import run_view

    return run_view(state, config, run.run_id)


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    """Add ``flujo memory`` (imported only when invoked)."""
    from flujo.cli import lazy_command

    cli.add_command(
        lazy_command(
            "memory",
            "flujo_memory.commands:memory",
            help="Long-term memory: add, search, forget, stats, reindex (flujo-memory).",
        )
    )
