"""What a run's plugins may use: config, state, background tasks and the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from flujo.application.scrubbing import Scrubbing

if TYPE_CHECKING:
    from collections.abc import Callable

    from flujo.application.background import BackgroundTaskManager
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import (
        Embedder,
        Evaluator,
        GovernancePolicy,
        SandboxProtocol,
        StateBackend,
        VectorStoreProtocol,
    )
    from flujo.plugins.manager import PluginManager
    from flujo.plugins.registry import Kind


@dataclass(slots=True)
class Runtime:
    """Handed to observer hooks and to ``flujo_retriever``.

    Observers use ``tasks.schedule(name, coroutine_function)`` for anything that does I/O, and
    ``state.execute``/``state.fetch_all`` for tables they own.
    """

    config: FlujoConfig
    state: StateBackend
    tasks: BackgroundTaskManager
    plugins: PluginManager
    services: dict[str, Any] = field(default_factory=dict)
    """Long-lived objects plugins attach in ``flujo_runtime_started``, by name."""
    idle_plugins: set[str] = field(default_factory=set)
    """Plugins (by distribution name) with nothing to do for this runner: one whose own
    section turns it off adds its name in ``flujo_runtime_started``, and its run and step
    hooks (``flujo_run_started``, ``flujo_step_started``, ``flujo_wrap_step``,
    ``flujo_step_completed``, ``flujo_step_commit``, ``flujo_run_finalized``,
    ``flujo_wrap_operation``) are not called
    for this runner's runs, so the events only it would need are not even built: installed
    but off costs the run nothing.

    .. versionadded:: 0.2"""
    scrubbing: Scrubbing = field(default_factory=lambda: Scrubbing(()))
    """The run's policies' scrubbing: a plugin that stores or sends something it got from a
    live context (never from an event, already scrubbed) passes it through
    ``scrubbing.scrub``, and matches by flagged values through ``scrubbing.key``."""

    # Typed per kind, as Registry.create (overload stubs: one line each, no logic).
    @overload
    def create(self, kind: Literal["policies"], name: str) -> GovernancePolicy: ...
    @overload
    def create(self, kind: Literal["vector_stores"], name: str) -> VectorStoreProtocol: ...
    @overload
    def create(self, kind: Literal["embedders"], name: str) -> Embedder: ...
    @overload
    def create(self, kind: Literal["sandboxes"], name: str) -> SandboxProtocol: ...
    @overload
    def create(self, kind: Literal["evaluators"], name: str) -> Evaluator: ...
    @overload
    def create(self, kind: Literal["tools"], name: str) -> Callable[..., object]: ...
    @overload
    def create(self, kind: Kind, name: str) -> object: ...
    def create(self, kind: Kind, name: str) -> object:
        """Instantiate the registered ``kind`` named ``name`` with this runtime's config (see
        :meth:`flujo.plugins.registry.Registry.create`)."""
        return self.plugins.registry.create(kind, name, self.config)
