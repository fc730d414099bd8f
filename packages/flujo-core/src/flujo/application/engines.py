"""Execution engines: the in-process ``local`` engine, and choosing one by name.

An engine executes runs (:class:`~flujo.domain.interfaces.Engine`); plugins register theirs
with ``flujo_register_engines`` and ``[engine] kind`` or ``flujo run --engine`` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flujo.domain.errors import ConfigError

if TYPE_CHECKING:
    from flujo.application.runner import Flujo
    from flujo.config import FlujoConfig
    from flujo.domain.context import PipelineContext
    from flujo.domain.interfaces import Engine
    from flujo.domain.models import PipelineResult
    from flujo.plugins.manager import PluginManager


class LocalEngine:
    """Runs execute in this process, in the runner's own step loop (the default)."""

    name = "local"

    async def run(
        self,
        runner: Flujo[Any],
        input: Any,
        *,
        context: PipelineContext | Mapping[str, Any] | None = None,
    ) -> PipelineResult:
        return await runner.run_async(input, context=context)

    async def answered(self, run_id: str) -> str | None:
        return None  # an answered run waits for `flujo runs resume` (or a --stale worker)

    async def resume(self, runner: Flujo[Any], run_id: str) -> PipelineResult:
        return await runner.resume_async(run_id)


def local_engine(config: FlujoConfig) -> Engine:
    """The ``local`` engine's factory."""
    return LocalEngine()


def create_engine(
    config: FlujoConfig, plugins: PluginManager, name: str | None = None, *, what: str = ""
) -> Engine:
    """The engine ``name`` (else ``[engine] kind``), made by its registered factory.

    An unknown name is a one-line :class:`ConfigError` saying where the name came from
    (``what``, else ``[engine] kind``) and listing every registered engine with its plugin.
    """
    chosen = name if name is not None else config.engine.kind
    where = what or f"{config.path or 'flujo.toml'}: [engine] kind"
    if chosen not in plugins.registry.names("engines"):
        raise ConfigError(f"{where}: {plugins.registry.unknown('engines', chosen)}")
    return plugins.registry.create("engines", chosen, config)
