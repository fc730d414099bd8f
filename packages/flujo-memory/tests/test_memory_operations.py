"""Memory work is reported to the core as operations (a tracing plugin's spans):
``context.retrieve`` as ``memory.retrieve`` inside the asking step, each indexing batch as
``memory.index`` serving the runs whose steps it writes, whichever task runs it (the
background indexer, or a ``flush()`` called from outside the run). They carry the store,
the embedder and counts, never a query or a text.

A real runner and the default store on disk; the "tracer" is the core's test plugin
(``flujo.testing.operations.OperationRecorder``); flujo-otel's spans of them are checked with
every package installed, in ``tests/integration``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from memtest_pipelines import learn_and_recall

import flujo_memory.plugin
from flujo import Flujo, RunStatus
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.operations import OperationRecorder


async def test_retrievals_and_indexing_are_reported_without_texts(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    tracer = OperationRecorder()
    manager = PluginManager(strict=True)
    manager.register(flujo_memory.plugin, "flujo-memory")
    manager.register(tracer, "tracer")
    config = load_config(config_file(index_steps=["learn"]), plugin_manager=manager, environ={})
    secret = "the vault code is 7781"
    async with Flujo(learn_and_recall, config=config) as runner:
        first = await runner.run_async(secret)
        await runner.services["memory"].flush()  # from here, not from the run's task
        second = await runner.run_async("vault code")
    assert first.status is second.status is RunStatus.SUCCEEDED
    assert second.output == [f"fact: {secret}"]

    retrievals = tracer.of("memory.retrieve")
    assert [op.attributes["flujo.memory.hits"] for op in retrievals] == [0, 1]
    assert retrievals[0].runs == ()  # part of its step
    assert retrievals[1].attributes == {
        "flujo.memory.store": "qdrant",  # the defaults (embedded, on disk)
        "flujo.memory.embedder": "wordllama",
        "flujo.memory.limit": 3,
        "flujo.memory.query_chars": len("vault code"),
        "flujo.memory.filtered": False,
        "flujo.memory.hits": 1,
    }
    [index] = tracer.of("memory.index")[:1]
    assert index.runs == (first.run_id,)  # done apart from the run it serves
    assert index.attributes["flujo.memory.count"] == 1
    assert index.attributes["flujo.memory.indexed"] == 1
    assert index.error is None
    assert "vault" not in tracer.carried()
