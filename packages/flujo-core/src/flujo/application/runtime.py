"""What a run's plugins may use: config, state, background tasks and the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flujo.application.scrubbing import Scrubbing

if TYPE_CHECKING:
    from flujo.application.background import BackgroundTaskManager
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import StateBackend
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
    scrubbing: Scrubbing = field(default_factory=lambda: Scrubbing(()))
    """The run's policies' scrubbing: a plugin that stores or sends something it got from a
    live context (never from an event, already scrubbed) passes it through
    ``scrubbing.scrub``, and matches by flagged values through ``scrubbing.key``."""

    def create(self, kind: Kind, name: str) -> Any:
        """Instantiate the registered ``kind`` named ``name`` with this runtime's config."""
        return self.plugins.registry.create(kind, name, self.config)
