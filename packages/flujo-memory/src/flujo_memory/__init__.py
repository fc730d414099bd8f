"""flujo-memory: long-term semantic memory for Flujo pipelines.

Successful outputs of the steps named in ``[memory] index_steps`` are queued in an outbox in
the state database and indexed in the background; any step recalls them with
``await context.retrieve(query)``. ``runner.services["memory"]`` is the
:class:`~flujo_memory.service.MemoryService` (``flush()``, ``search()``, ``forget()``...).

This module imports nothing heavy; import from the submodules.
"""

from __future__ import annotations

__version__ = "0.1.0"
