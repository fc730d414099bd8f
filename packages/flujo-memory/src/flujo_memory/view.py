"""flujo-memory's section of a run's view (``flujo runs show``): what the run wrote."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from flujo_memory import outbox

if TYPE_CHECKING:
    from flujo.plugin import FlujoConfig, RunViewSection, StateBackend

_TEXT_CHARS = 120
_COUNT_S = 10.0


async def run_view(state: StateBackend, config: FlujoConfig, run_id: str) -> RunViewSection | None:
    """The memories ``run_id`` wrote: how many are in the store, and the outbox rows still
    waiting (or failed) to get there. ``None``: a database made before flujo-memory was
    installed. The store's count is best effort: a store that cannot be reached is said so
    in its field, the outbox is still shown."""
    from flujo.plugin import RunViewSection, migrated

    if not await migrated(state, outbox.migrations(state.dialect)):
        return None
    rows = await state.fetch_all(
        f"SELECT id, step_name, status, attempts, last_error, text, created_at "
        f"FROM {outbox.TABLE} WHERE run_id = :run_id ORDER BY created_at, id",
        {"run_id": run_id},
    )
    if not rows and not _indexes_steps(config):
        return None  # memory is not used by runs here: nothing to say about this one
    indexed = await _indexed(state, config, run_id)
    fields: dict[str, Any] = {
        "in the store": indexed,
        "waiting": sum(r["status"] == outbox.PENDING for r in rows),
        "failed": sum(r["status"] == outbox.FAILED for r in rows),
    }
    return RunViewSection(
        "Memory writes",
        fields=fields,
        columns=("step", "status", "attempts", "error", "text"),
        rows=[
            (r["step_name"], r["status"], r["attempts"], r["last_error"], _short(r["text"]))
            for r in rows
        ],
        payload={
            "indexed": indexed if isinstance(indexed, int) else None,
            "outbox": [{k: r[k] for k in r if k != "created_at"} for r in rows],
        },
        empty="nothing waiting in the outbox",
    )


def _indexes_steps(config: FlujoConfig) -> bool:
    from flujo_memory.settings import SECTION, MemorySettings

    return bool(config.section(SECTION, MemorySettings).index_steps)


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_CHARS else text[: _TEXT_CHARS - 1] + "…"


async def _indexed(state: StateBackend, config: FlujoConfig, run_id: str) -> int | str:
    from flujo_memory.service import MemoryService

    registry = config.plugin_manager.registry if config.plugin_manager else None
    service = MemoryService(config, state, registry=registry)
    try:
        store = service.get_store()
        if not hasattr(store, "count"):
            return "unknown (the store cannot count)"
        # Bounded on its own: a store that does not answer still leaves the outbox shown.
        found: int = await asyncio.wait_for(store.count(filter={"run_id": run_id}), _COUNT_S)
        return found
    except TimeoutError:
        return f"unavailable (the store did not answer within {_COUNT_S:g}s)"
    except Exception as exc:  # noqa: BLE001 - the outbox is still worth showing
        return f"unavailable ({type(exc).__name__}: {exc})"
    finally:
        await service.close()
