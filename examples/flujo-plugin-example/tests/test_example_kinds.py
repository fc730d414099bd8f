"""The vector store, embedder, evaluator and tool of flujo-plugin-example.

The store, the embedder and the evaluator pass Flujo's conformance suites twice: built
directly, and as Flujo builds them (registered factory + ``flujo.toml``). The tool runs in a
real pipeline driven by a scripted model (the only stand-in: no LLM runs here). Choosing the
store, the embedder and the evaluator by name in flujo-memory and flujo-evals is tested in the
repo's ``tests/integration`` (those plugins are not installed in this package's own test
session).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from flujo import Flujo, Pipeline, RunStatus, Step, make_agent_async
from flujo.config import FlujoConfig, load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.conformance import (
    EmbedderConformance,
    EvaluatorConformance,
    VectorStoreConformance,
    make_run_record,
)
from flujo.testing.models import call_tool, scripted_model
from pydantic_ai.messages import ToolReturnPart

import flujo_plugin_example.plugin
from flujo_plugin_example.evaluator import CleanOutput
from flujo_plugin_example.memory import DictVectorStore, TrigramEmbedder
from flujo_plugin_example.policy import DenyWords

DIST = "flujo-plugin-example"


def _config(tmp_path: Path, toml: str) -> FlujoConfig:
    path = tmp_path / "flujo.toml"
    path.write_text(toml, encoding="utf-8")
    pm = PluginManager()
    info = pm.register(flujo_plugin_example.plugin, DIST)
    assert info.status == "ok", info.error
    return load_config(path, plugin_manager=pm, environ={})


# ---------------------------------------------------------------- embedder


class TestTrigramEmbedder(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> Any:
        return TrigramEmbedder()


class TestTrigramEmbedderFromConfig(EmbedderConformance):
    @pytest.fixture
    def embedder(self, tmp_path: Path) -> Any:
        config = _config(tmp_path, "")
        assert config.plugin_manager is not None
        return config.plugin_manager.registry.create("embedders", "example_trigram", config)


# ---------------------------------------------------------------- vector store


class TestDictStore(VectorStoreConformance):
    @pytest.fixture
    def store(self) -> Any:
        return DictVectorStore()


class TestDictStoreFromConfig(VectorStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        config = _config(tmp_path, "")
        assert config.plugin_manager is not None
        return config.plugin_manager.registry.create("vector_stores", "example_dict", config)


async def test_store_keeps_copies_not_the_callers_objects() -> None:
    from flujo.plugin import Memory

    store = DictVectorStore()
    memory = Memory(id="a", text="a", vector=[1.0, 0.0], metadata={"k": 1})
    await store.add([memory])
    memory.metadata["k"] = 2
    (hit,) = await store.search([1.0, 0.0], 1)
    hit.memory.metadata["k"] = 3
    (again,) = await store.search([1.0, 0.0], 1)
    assert again.memory.metadata == {"k": 1}


async def test_store_refuses_what_it_cannot_answer_honestly() -> None:
    from flujo.plugin import Memory

    store = DictVectorStore()
    with pytest.raises(ValueError, match="has no vector"):
        await store.add([Memory(id="a", text="a")])
    await store.add([Memory(id="a", text="a", vector=[1.0, 0.0])])
    with pytest.raises(ValueError, match="does not match"):
        await store.search([1.0, 0.0, 0.0], 1)
    with pytest.raises(ValueError, match="needs ids, a filter"):
        await store.delete()
    # A bool is not an int: True must not match a stored 1 (nor the reverse).
    await store.add([Memory(id="b", text="b", vector=[0.0, 1.0], metadata={"n": 1})])
    assert await store.search([1.0, 0.0], 5, filter={"n": True}) == []


# ---------------------------------------------------------------- embedder
# Flujo has no embedder conformance suite; these check the Embedder contract directly.


async def test_embedder_contract(tmp_path: Path) -> None:
    from flujo.plugin import Embedder

    config = _config(tmp_path, "[example]\ndimension = 32\n")
    assert config.plugin_manager is not None
    embedder = config.plugin_manager.registry.create("embedders", "example_trigram", config)
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == 32
    texts = ["the wifi password", "", "Ünïcødé ✓\nline two", "the wifi password"]
    vectors = await embedder.embed(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 32
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0)
    assert vectors[0] == vectors[3]  # deterministic
    assert await embedder.embed([]) == []


async def test_embedder_finds_spelling_neighbours_through_the_store() -> None:
    from flujo.plugin import Memory

    embedder = TrigramEmbedder(64)
    store = DictVectorStore()
    texts = ["the office wifi password", "lunch is at noon", "quarterly tax report"]
    vectors = await embedder.embed(texts)
    pairs = zip(texts, vectors, strict=True)
    await store.add([Memory(id=str(i), text=t, vector=v) for i, (t, v) in enumerate(pairs)])
    (query,) = await embedder.embed(["wifi passwords"])
    hits = await store.search(query, 3)
    assert hits[0].memory.text == "the office wifi password"


def test_embedder_dimension_is_validated(tmp_path: Path) -> None:
    from flujo.plugin import ConfigError

    with pytest.raises(ConfigError, match="dimension"):
        _config(tmp_path, "[example]\ndimension = 1\n")


# ---------------------------------------------------------------- evaluator


class TestCleanOutput(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self) -> Any:
        return CleanOutput(DenyWords(["password"]))


class TestCleanOutputFromConfig(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self, tmp_path: Path) -> Any:
        config = _config(tmp_path, '[example]\nwords = ["password"]\n')
        assert config.plugin_manager is not None
        return config.plugin_manager.registry.create("evaluators", "example_clean_output", config)


async def test_evaluator_scores() -> None:
    evaluator = CleanOutput(DenyWords(["password"]))
    clean = await evaluator.evaluate(make_run_record(output={"answer": "it is 4"}))
    leaky = await evaluator.evaluate(make_run_record(output={"answer": "the PASSWORD is 4"}))
    failed = await evaluator.evaluate(make_run_record(RunStatus.FAILED))
    assert (clean.score, clean.label) == (1.0, "pass")
    assert (leaky.score, leaky.label, leaky.reasoning) == (
        0.0,
        "fail",
        "the output contains 'password'",
    )
    assert (failed.score, failed.label) == (0.0, "no_output")


# ---------------------------------------------------------------- tool

TOOL_CONFIG = """\
[state]
uri = "sqlite:///flujo.db"

[run]
policies = ["deny_words"]

[example]
words = ["password"]
"""


async def test_tool_runs_under_its_id(tmp_path: Path) -> None:
    config = _config(tmp_path, TOOL_CONFIG)
    model = scripted_model(call_tool("example__word_count", text="three little words"), "3")
    agent = make_agent_async(model, "Count words.", tools=["example.word_count"], config=config)
    async with Flujo(Pipeline([Step("count", agent)], name="count"), config=config) as runner:
        result = await runner.run_async("how many words?")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "3"
    returned = [
        part
        for request in model.requests
        for message in request.messages
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart)
    ]
    assert [(p.tool_name, p.content) for p in returned] == [("example__word_count", 3)]


async def test_tool_call_goes_through_the_policy_by_its_id(tmp_path: Path) -> None:
    config = _config(tmp_path, TOOL_CONFIG)
    model = scripted_model(call_tool("example__word_count", text="my password is x"), "4")
    agent = make_agent_async(model, "Count words.", tools=["example.word_count"], config=config)
    async with Flujo(Pipeline([Step("count", agent)], name="count"), config=config) as runner:
        result = await runner.run_async("how many words?")
    assert result.status is not RunStatus.SUCCEEDED
    assert "arguments of 'example.word_count' contain 'password'" in (result.error or "")
