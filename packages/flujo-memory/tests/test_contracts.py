"""The core contracts memory relies on: scrubbed payloads, hot path, any registered store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from memtest_pipelines import TenantContext, learn_and_recall, learn_only, recall_only

from flujo import Flujo, PipelineContext, PolicyDecision, RunStatus, hookimpl
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo_memory import plugin as memory_plugin
from flujo_memory.embedders import HashingEmbedder
from flujo_memory.outbox import TABLE


class MaskDigits:
    """A governance policy whose ``scrub`` masks digits in everything that leaves the run."""

    name = "mask_digits"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        if isinstance(value, str):
            return "".join("#" if c.isdigit() else c for c in value)
        return value


async def test_indexed_text_is_what_governance_let_through(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    cfg = config_file(index_steps=["learn"])
    async with Flujo(learn_only, config=cfg, policies=[MaskDigits()]) as runner:
        result = await runner.run_async("card 4111 1111 1111 1111 expires 12/29")
        await runner.services["memory"].flush()
        hits = await runner.services["memory"].search("card expires")
    assert result.output == "fact: card 4111 1111 1111 1111 expires 12/29"  # caller sees it
    assert [h.memory.text for h in hits] == ["fact: card #### #### #### #### expires ##/##"]


class Gate:
    """An embedder that waits for a gate to open: indexing cannot finish before it does."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(384)
        self.dimension = 384
        self.identity = self.inner.identity
        self.open = asyncio.Event()
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        await self.open.wait()
        return await self.inner.embed(texts)


async def test_runs_never_wait_for_the_embedder(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    gate = Gate()

    class GatePlugin:
        @hookimpl
        def flujo_register_embedders(self, register: Any) -> None:
            register("gate", lambda config: gate)

    manager = PluginManager()
    manager.register(memory_plugin, "flujo-memory")
    manager.register(GatePlugin(), "gate")
    cfg = load_config(
        config_file(index_steps=["learn"], embedder="gate", linger_ms=0),
        plugin_manager=manager,
        environ={},
    )
    async with Flujo(learn_only, config=cfg) as runner:
        results = [await runner.run_async(f"fact number {i}") for i in range(3)]
        assert all(r.status is RunStatus.SUCCEEDED for r in results)
        # Every run finished while the embedder was still blocked: the rows wait in the outbox.
        pending = await runner.runtime.state.fetch_all(f"SELECT status FROM {TABLE}")
        assert [r["status"] for r in pending] == ["pending"] * 3
        gate.open.set()
        report = await runner.services["memory"].flush()
        assert report.pending == 0
        assert len(await runner.services["memory"].search("fact number", limit=10)) == 3
    assert gate.calls >= 1


@pytest.mark.parametrize("store", ["qdrant", "memory"])
async def test_tenant_isolation_on_every_builtin_store(
    tmp_path: Path, config_file: Callable[..., Path], store: str
) -> None:
    cfg = config_file(index_steps=["learn"], scope_fields=["tenant"], store=store)
    async with Flujo(learn_and_recall, config=cfg, context_model=TenantContext) as runner:
        for tenant in ("a", "b", "c"):
            await runner.run_async(f"secret plan of tenant {tenant}", context={"tenant": tenant})
        await runner.services["memory"].flush()
        for tenant in ("a", "b", "c"):
            found = await runner.services["memory"].search(
                "secret plan", scope={"tenant": tenant}, limit=10
            )
            assert [h.memory.text for h in found] == [f"fact: secret plan of tenant {tenant}"]
    if store == "qdrant":  # persisted: a new runner sees the same, still per tenant
        async with Flujo(recall_only, config=cfg, context_model=TenantContext) as runner:
            result = await runner.run_async("fact: secret plan", context={"tenant": "b"})
        assert result.output == ["fact: secret plan of tenant b"]


async def test_steps_inside_control_flow_steps_are_indexed_by_path(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    """``index_steps`` names inner steps by their path in the tree (patterns match it)."""
    from flujo import Step

    def note(text: str) -> str:
        return f"note: {text}"

    def shout(text: str) -> str:
        return text.upper()

    mapped = Step.map("each", Step.from_callable(note) >> Step.from_callable(shout))
    # fnmatch patterns: "[" opens a character class, so "each*/note" matches every item.
    cfg = config_file(index_steps=["each*/note"])
    async with Flujo(mapped, config=cfg) as runner:
        result = await runner.run_async(["alpha", "beta"])
        await runner.services["memory"].flush()
        hits = await runner.services["memory"].search("note", limit=5)
    assert result.output == ["NOTE: ALPHA", "NOTE: BETA"]
    assert sorted(h.memory.text for h in hits) == ["note: alpha", "note: beta"]
