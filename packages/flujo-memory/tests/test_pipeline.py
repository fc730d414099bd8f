"""Memory end to end through real runners: default store on disk, no server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from memtest_pipelines import (
    TenantContext,
    learn_and_recall,
    learn_only,
    recall_only,
)

from flujo import Flujo, RunStatus
from flujo.domain.errors import ConfigError
from flujo.state.sqlite import SQLiteBackend
from flujo_memory.errors import ScopeRequiredError
from flujo_memory.outbox import TABLE
from flujo_memory.service import MemoryService


async def outbox_rows(root: Path) -> list[dict[str, object]]:
    state = SQLiteBackend(root / ".flujo" / "flujo.db")
    await state.open()
    try:
        return await state.fetch_all(f"SELECT id, run_id, status, attempts FROM {TABLE}")
    finally:
        await state.close()


async def test_run_two_recalls_what_run_one_learned(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    cfg = config_file(index_steps=["learn"])
    async with Flujo(learn_and_recall, config=cfg) as runner:
        first = await runner.run_async("the office wifi password rotates on mondays")
        assert first.status is RunStatus.SUCCEEDED
        assert first.output == []  # nothing was known before
        report = await runner.services["memory"].flush()
        assert (report.failed, report.pending) == (0, 0)
        hits = await runner.services["memory"].search("wifi")
        assert [h.memory.step_name for h in hits] == ["learn"]
        assert hits[0].memory.run_id == first.run_id
    # A new runner (a new process, as far as memory is concerned): embedded store on disk.
    assert (tmp_path / ".flujo" / "memory" / "flujo").is_dir()
    async with Flujo(recall_only, config=cfg) as runner:
        second = await runner.run_async("fact: wifi password")
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.output == ["fact: the office wifi password rotates on mondays"]
    assert await outbox_rows(tmp_path) == []


async def test_close_flushes_the_outbox(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    cfg = config_file(index_steps=["le*"], linger_ms=5000)
    async with Flujo(learn_and_recall, config=cfg) as runner:
        await runner.run_async("close drains the queue")
    assert await outbox_rows(tmp_path) == []
    async with Flujo(recall_only, config=cfg) as runner:
        result = await runner.run_async("fact: queue")
    assert result.output == ["fact: close drains the queue"]


async def test_steps_not_matching_index_steps_are_not_remembered(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    cfg = config_file(index_steps=["other*"])
    async with Flujo(learn_and_recall, config=cfg) as runner:
        await runner.run_async("not remembered")
        await runner.services["memory"].flush()
        assert await runner.services["memory"].search("remembered") == []
    assert await outbox_rows(tmp_path) == []


async def test_tenants_never_see_each_others_memories(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    cfg = config_file(index_steps=["learn"], scope_fields=["tenant"])
    async with Flujo(learn_and_recall, config=cfg, context_model=TenantContext) as runner:
        await runner.run_async("acme ships on fridays", context={"tenant": "acme"})
        await runner.run_async("globex ships on tuesdays", context={"tenant": "globex"})
        await runner.services["memory"].flush()
        acme = await runner.run_async("ships", context={"tenant": "acme"})
        globex = await runner.run_async("ships", context={"tenant": "globex"})
        nobody = await runner.run_async("ships", context={"tenant": "initech"})
        service: MemoryService = runner.services["memory"]
        with pytest.raises(ScopeRequiredError, match="no value for scope field 'tenant'"):
            await service.search("ships")
        with pytest.raises(ScopeRequiredError, match="not from a filter"):
            await service.search("ships", scope={"tenant": "acme"}, filter={"scope": "x"})
        # A run without a tenant fails its retrieve step instead of searching globally.
        unscoped = await runner.run_async("ships")
    assert acme.output == ["fact: acme ships on fridays"]
    assert globex.output == ["fact: globex ships on tuesdays"]
    assert nobody.output == []
    assert unscoped.status is RunStatus.FAILED
    assert "no value for scope field 'tenant'" in (unscoped.error or "")


async def test_metadata_filters_and_forget_by_scope_run_and_ids(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    # No background indexing (a 60 s linger): the test flushes when it means to, and the row
    # queued below stays queued whatever the timing of the earlier runs' indexers.
    cfg = config_file(index_steps=["learn"], scope_fields=["tenant", "user"], linger_ms=60_000)
    async with Flujo(learn_and_recall, config=cfg, context_model=TenantContext) as runner:
        a1 = await runner.run_async("ana likes tea", context={"tenant": "acme", "user": "ana"})
        await runner.run_async("ana likes jazz", context={"tenant": "acme", "user": "ana"})
        await runner.run_async("bo likes tea", context={"tenant": "acme", "user": "bo"})
        await runner.run_async("cy likes tea", context={"tenant": "globex", "user": "cy"})
        service: MemoryService = runner.services["memory"]
        await service.flush()
        ana = {"tenant": "acme", "user": "ana"}
        by_step = await service.search("likes", scope=ana, filter={"step_name": "learn"})
        assert len(by_step) == 2
        typed = await service.search("likes", scope=ana, filter={"step_index": "0"})
        assert typed == []  # metadata filters keep types: the int 0 is not "0"
        assert len(await service.search("likes", scope=ana, filter={"step_index": 0})) == 2
        added = await service.add("ana is vegetarian", scope=ana, metadata={"source": "cli"})
        only = await service.search("ana", scope=ana, filter={"source": "cli"})
        assert [h.memory.id for h in only] == [added.id]

        by_run = await service.forget(run_id=a1.run_id)
        assert (by_run.store, by_run.outbox) == (1, 0)
        by_id = await service.forget(ids=[added.id])
        assert (by_id.store, by_id.outbox) == (1, 0)
        # Queue one more for acme without indexing it, then forget the whole tenant.
        await runner.run_async("bo likes chess", context={"tenant": "acme", "user": "bo"})
        gone = await service.forget(scope={"tenant": "acme"})
        assert (gone.store, gone.outbox) == (2, 1)
        assert await service.search("likes", scope=ana) == []
        left = await service.search("likes", scope={"tenant": "globex", "user": "cy"})
        assert [h.memory.text for h in left] == ["fact: cy likes tea"]
        stats = await service.stats()
        assert stats["memories"] == 1
        assert stats["outbox_pending"] == 0
    assert await outbox_rows(tmp_path) == []


async def test_a_failing_embedder_is_retried_recorded_and_never_fails_the_run(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    # Nothing listens on port 9 of loopback: every embeddings request fails.
    cfg = config_file(
        index_steps=["learn"],
        embedder="openai",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_model="m",
        max_attempts=3,
        retry_base_s=0.01,
    )
    async with Flujo(learn_only, config=cfg) as runner:
        result = await runner.run_async("remember me")
        report = await runner.services["memory"].flush()
        failures = list(runner.runtime.tasks.failures)
    assert result.status is RunStatus.SUCCEEDED
    assert (report.indexed, report.pending) == (0, 0)  # gave up: the row is marked failed
    assert any("EmbedderError" in f.error for f in failures)
    [row] = await outbox_rows(tmp_path)
    assert (row["status"], row["attempts"]) == ("failed", 3)


async def test_collection_records_its_embedder(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    cfg = config_file(index_steps=["learn"], embedder="hashing", hashing_dimension=64)
    async with Flujo(learn_and_recall, config=cfg) as runner:
        await runner.run_async("built with 64 dimensions")
    cfg = config_file(index_steps=["learn"], embedder="hashing", hashing_dimension=32)
    async with Flujo(recall_only, config=cfg) as runner:
        result = await runner.run_async("fact: dimensions")
        stats = await runner.services["memory"].stats()
    assert result.status is RunStatus.FAILED
    assert "was built with embedder hashing:v1:64" in (result.error or "")
    assert "flujo memory reindex" in (result.error or "")
    assert stats["recorded_embedder"] == "hashing:v1:64"
    # reindex re-embeds with the configured embedder; then searches work again.
    async with Flujo(recall_only, config=cfg) as runner:
        await runner.start()
        assert await runner.services["memory"].reindex() == 1
        again = await runner.run_async("fact: dimensions")
    assert again.output == ["fact: built with 64 dimensions"]


async def test_unknown_store_or_embedder_fails_the_start(
    config_file: Callable[..., Path],
) -> None:
    for key, kind in (("store", "vector store"), ("embedder", "embedder")):
        cfg = config_file(**{key: "nope"})
        runner = Flujo(recall_only, config=cfg)
        # A configuration mistake stays a ConfigError (one line, exit 2 on the CLI).
        with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'; registered: "):
            await runner.start()


async def test_unreachable_qdrant_url_is_a_clear_error(config_file: Callable[..., Path]) -> None:
    cfg = config_file(url="http://127.0.0.1:9")
    async with Flujo(recall_only, config=cfg) as runner:
        result = await runner.run_async("fact: anything")
    assert result.status is RunStatus.FAILED
    assert "cannot reach the Qdrant server at http://127.0.0.1:9" in (result.error or "")


CRASHER = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from flujo import Flujo
from memtest_pipelines import learn_then_crash

async def main():
    runner = Flujo(learn_then_crash, config={config!r})
    await runner.run_async("the crash happened after this step")

asyncio.run(main())
"""


async def test_outbox_survives_a_kill_between_step_success_and_indexing(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    # A long linger keeps the indexer waiting, so the kill lands before indexing.
    cfg = config_file(index_steps=["learn"], linger_ms=60_000)
    code = CRASHER.format(tests=str(Path(__file__).parent), config=str(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    [row] = await outbox_rows(tmp_path)
    assert row["status"] == "pending"
    # The next runner resumes the outbox in the background on start; flush waits for it.
    async with Flujo(recall_only, config=cfg) as runner:
        await runner.start()
        await runner.services["memory"].flush()
        result = await runner.run_async("fact: crash")
    assert result.output == ["fact: the crash happened after this step"]
    assert await outbox_rows(tmp_path) == []
