"""The outbox on both state backends, and shared by several workers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from memtest_pipelines import TenantContext, learn_and_recall, recall_only

from flujo import Flujo, FlujoConfig, RunStatus
from flujo.config import load_config
from flujo.state import open_backend
from flujo_memory.embedders import HashingEmbedder
from flujo_memory.outbox import INSERT, TABLE, migrations
from flujo_memory.service import MemoryService
from flujo_memory.stores.memory import InMemoryStore


async def test_memory_across_runs_on_each_state_backend(
    tmp_path: Path, flujo_state_uri: str, config_file: Callable[..., Path]
) -> None:
    cfg_path = config_file(index_steps=["learn"], scope_fields=["tenant"])
    text = cfg_path.read_text().replace(
        'uri = "sqlite:///.flujo/flujo.db"', f'uri = "{flujo_state_uri}"'
    )
    cfg_path.write_text(text)
    async with Flujo(learn_and_recall, config=cfg_path, context_model=TenantContext) as runner:
        first = await runner.run_async("backups run at 2am", context={"tenant": "acme"})
        assert first.status is RunStatus.SUCCEEDED, first.error
        await runner.services["memory"].flush()
        gone = await runner.services["memory"].forget(run_id="no-such-run")
        assert (gone.store, gone.outbox) == (0, 0)
    async with Flujo(recall_only, config=cfg_path, context_model=TenantContext) as runner:
        second = await runner.run_async("fact: backups", context={"tenant": "acme"})
        rows = await runner.runtime.state.fetch_all(f"SELECT id FROM {TABLE}")
    assert second.output == ["fact: backups run at 2am"]
    assert rows == []


class CountingEmbedder(HashingEmbedder):
    """Counts every text it embeds, and yields to the loop so workers interleave."""

    def __init__(self) -> None:
        super().__init__(32)
        self.texts: list[str] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        await asyncio.sleep(0.01)
        return await super().embed(texts)


async def test_workers_sharing_an_outbox_index_each_row_once(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    config: FlujoConfig = load_config(
        None, environ={"FLUJO__MEMORY__BATCH_SIZE": "7", "FLUJO__STATE__URI": flujo_state_uri}
    )
    store, embedder = InMemoryStore(), CountingEmbedder()
    states = []
    for _ in range(3):
        state = open_backend(config.state, tmp_path)
        await state.open(migrations(state.dialect))
        states.append(state)
    for i in range(60):
        await states[0].execute(
            INSERT,
            {
                "id": f"row-{i:02d}",
                "run_id": "r",
                "step_name": "s",
                "scope": "default",
                "scope_values": "{}",
                "text": f"memory {i}",
                "metadata": "{}",
                "created_at": float(i),
            },
        )
    workers = [MemoryService(config, state, store=store, embedder=embedder) for state in states]
    reports = await asyncio.gather(*(w.flush() for w in workers))
    assert sum(r.indexed for r in reports) == 60
    assert sorted(embedder.texts) == sorted(f"memory {i}" for i in range(60))
    assert await store.count() == 60
    assert await states[0].fetch_all(f"SELECT id FROM {TABLE}") == []
    for state in states:
        await state.close()
