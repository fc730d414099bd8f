"""flujo-plugin-example's vector store, embedder and evaluator chosen by name in the
first-party plugins' own settings, exactly as their built-in ones are: ``[memory] store`` /
``embedder`` in flujo-memory, ``[eval] evaluators`` in flujo-evals, ``[sandbox] backend`` and
``flujo sandbox exec --backend`` in flujo-sandbox. Real runners, real SQLite
state, every plugin installed and loaded from its entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flujo import Flujo, Pipeline, RunStatus, Step
from flujo.config import FlujoConfig, load_config
from flujo.state import open_state
from flujo_plugin_example.evaluator import CleanOutput
from flujo_plugin_example.memory import DictVectorStore, TrigramEmbedder


def _config(tmp_path: Path, body: str) -> FlujoConfig:
    path = tmp_path / "flujo.toml"
    path.write_text('[state]\nuri = "sqlite:///flujo.db"\n\n' + body, encoding="utf-8")
    return load_config(path, environ={})


def learn(text: str) -> str:
    return f"fact: {text}"


def answer(text: str) -> str:
    return text


async def test_memory_uses_the_example_store_and_embedder_by_name(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[memory]\nstore = "example_dict"\nembedder = "example_trigram"\n'
        'index_steps = ["learn"]\n\n[example]\ndimension = 48\n',
    )
    pipeline = Pipeline([Step.from_callable(learn, name="learn")], name="learn")
    async with Flujo(pipeline, config=config) as runner:
        first = await runner.run_async("the office wifi password rotates on mondays")
        memory = runner.services["memory"]
        await runner.run_async("lunch is served at noon")
        assert first.status is RunStatus.SUCCEEDED, first.error
        report = await memory.flush()
        assert (report.failed, report.pending) == (0, 0)
        assert isinstance(memory.get_store(), DictVectorStore)
        embedder = memory.get_embedder()
        assert isinstance(embedder, TrigramEmbedder)
        assert embedder.dimension == 48
        hits = await memory.search("wifi passwords", limit=2)
    assert hits[0].memory.text == "fact: the office wifi password rotates on mondays"
    assert hits[0].memory.run_id == first.run_id


async def test_evals_run_the_example_evaluator_by_name(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ["example_clean_output"]\n\n'
        '[example]\nwords = ["password"]\n',
    )
    pipeline = Pipeline([Step.from_callable(answer, name="answer")], name="answer")
    async with Flujo(pipeline, config=config) as runner:
        clean = await runner.run_async("it is sunny")
        leaky = await runner.run_async("the password is hunter2")
        engine = runner.services["evals"]
        assert isinstance(engine.evaluators["example_clean_output"], CleanOutput)
    state = await open_state(config)
    try:
        rows: list[dict[str, Any]] = await state.fetch_all(
            "SELECT run_id, evaluator, score, label FROM evaluations ORDER BY run_id"
        )
    finally:
        await state.close()
    by_run = {r["run_id"]: (r["evaluator"], r["score"], r["label"]) for r in rows}
    assert by_run == {
        clean.run_id: ("example_clean_output", 1.0, "pass"),
        leaky.run_id: ("example_clean_output", 0.0, "fail"),
    }


def test_sandbox_chosen_by_name_in_config_and_on_the_command_line(tmp_path: Path) -> None:
    from flujo.testing.cli import run_flujo

    (tmp_path / "code.py").write_text("print(6 * 7)\n", encoding="utf-8")
    flag = run_flujo(
        "sandbox", "exec", "--backend", "example_bwrap", "--json", "code.py", cwd=tmp_path
    )
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout)["backend"] == "example_bwrap"
    assert json.loads(flag.stdout)["stdout"] == "42\n"
    (tmp_path / "flujo.toml").write_text('[sandbox]\nbackend = "example_bwrap"\n')
    configured = run_flujo("sandbox", "exec", "--json", "code.py", cwd=tmp_path)
    assert configured.returncode == 0, configured.stderr
    assert json.loads(configured.stdout)["backend"] == "example_bwrap"


async def test_governance_rules_name_the_example_tool_by_its_id(tmp_path: Path) -> None:
    from flujo import make_agent_async
    from flujo.testing.models import call_tool, scripted_model

    config = _config(
        tmp_path,
        '[governance]\npolicies = ["tool_allowlist"]\n\n'
        '[governance.tools]\ndeny = ["example.word_count"]\n',
    )
    model = scripted_model(call_tool("example__word_count", text="a b c"), "refused")
    agent = make_agent_async(model, "Count words.", tools=["example.word_count"], config=config)
    async with Flujo(Pipeline([Step("count", agent)], name="count"), config=config) as runner:
        result = await runner.run_async("how many words?")
    assert result.status is RunStatus.SUCCEEDED, result.error  # refused, not failed
    state = await open_state(config)
    try:
        rows = await state.fetch_all("SELECT policy, tool, decision FROM policy_decisions")
    finally:
        await state.close()
    assert [(r["policy"], r["tool"], r["decision"]) for r in rows] == [
        ("tool_allowlist", "example.word_count", "deny")
    ]
