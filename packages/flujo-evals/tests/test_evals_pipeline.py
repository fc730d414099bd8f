"""flujo-evals inside a real runner configured by a flujo.toml: rows for exactly the sampled
and failed runs, the run never waits, shutdown, startup errors, redacted judge payloads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from evals_testkit import Kit

from flujo import (
    ConfigError,
    Flujo,
    FlujoConfig,
    Pipeline,
    PipelineContext,
    PluginError,
    PolicyDecision,
    RunStatus,
    Step,
)
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.models import scripted_model
from flujo_evals.engine import SERVICE, EvalEngine
from flujo_evals.evaluators import JudgeEvaluator
from flujo_evals.sampling import is_sampled


def answer(text: str) -> str:
    if "fail" in text:
        raise ValueError("boom")
    return text.upper()


PIPELINE = Pipeline([Step.from_callable(answer, name="answer")], name="shout")


async def _eval_rows(config: FlujoConfig) -> list[dict[str, Any]]:
    from flujo.state import open_state

    state = await open_state(config)
    try:
        return await state.fetch_all("SELECT * FROM evaluations ORDER BY run_id, evaluator")
    finally:
        await state.close()


async def test_rows_for_exactly_the_sampled_and_failed_runs(make_config: Any) -> None:
    config = make_config(
        "[eval]\nenabled = true\nsampling_rate = 0.2\nsalt = 'pipeline-test'\n"
        'evaluators = ["regex", "python"]\nregex = "^[A-Z0-9 ]+$"\n'
        'python = "evals_testkit:length_score"\n'
    )
    async with Flujo(PIPELINE, config=config) as runner:
        results = [await runner.run_async(f"hello {i}") for i in range(50)]
        results += [await runner.run_async(f"fail {i}") for i in range(10)]
    assert [r.status for r in results].count(RunStatus.FAILED) == 10
    expected = {
        (r.run_id, name, 1.0 if r.status is RunStatus.FAILED else 5.0)
        for r in results
        for name in ("regex", "python")
        if r.status is RunStatus.FAILED or is_sampled("pipeline-test", r.run_id, name, 0.2)
    }
    rows = await _eval_rows(config)
    assert {(r["run_id"], r["evaluator"], r["sample_weight"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert all(r["status"] == "scored" for r in rows)
    failed_ids = {r.run_id for r in results if r.status is RunStatus.FAILED}
    for row in rows:
        ok = row["run_id"] not in failed_ids
        assert row["score"] == (1.0 if ok else 0.0) if row["evaluator"] == "regex" else True


async def test_disabled_by_default(make_config: Any) -> None:
    config = make_config('[eval]\nevaluators = ["regex"]\nregex = "."\n')
    async with Flujo(PIPELINE, config=config) as runner:
        await runner.run_async("hello")
        assert SERVICE not in runner.services
    assert await _eval_rows(config) == []


async def test_the_run_does_not_wait_for_evaluations(make_config: Any, kit: Kit) -> None:
    config = make_config("[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ['gated']\n")
    kit.gate = asyncio.Event()  # the evaluator blocks until the test opens the gate
    async with Flujo(PIPELINE, config=config) as runner:
        result = await runner.run_async("hello")
        assert result.succeeded
        engine = runner.services[SERVICE]
        assert isinstance(engine, EvalEngine)
        assert engine.scheduled == 1
        assert runner.runtime.tasks.pending == 1  # the evaluation is still to do
        kit.gate.set()
    (row,) = await _eval_rows(config)
    assert (row["run_id"], row["status"], row["label"]) == (result.run_id, "scored", "waited")


async def test_shutdown_records_unfinished_evaluations_as_not_done(
    make_config: Any, kit: Kit
) -> None:
    config = make_config(
        "[run]\ndrain_timeout_s = 0.05\n"
        "[eval]\nenabled = true\nsampling_rate = 1.0\nconcurrency = 1\nevaluators = ['gated']\n"
    )
    kit.gate = asyncio.Event()  # never opened: the evaluations cannot finish
    runner: Flujo[Any] = Flujo(PIPELINE, config=config)
    ids = [(await runner.run_async(f"hello {i}")).run_id for i in range(3)]
    await asyncio.wait_for(kit.started.wait(), 10)
    report = await runner.aclose()
    assert report is not None
    assert report.cancelled == 1
    rows = await _eval_rows(config)
    assert sorted(r["run_id"] for r in rows) == sorted(ids)
    assert {r["status"] for r in rows} == {"not_done"}
    assert all(r["score"] is None for r in rows)


async def test_shutdown_drains_pending_evaluations(make_config: Any) -> None:
    config = make_config(
        "[eval]\nenabled = true\nsampling_rate = 1.0\nconcurrency = 2\n"
        'evaluators = ["regex"]\nregex = "HELLO"\n'
    )
    async with Flujo(PIPELINE, config=config) as runner:
        for i in range(20):
            await runner.run_async(f"hello {i}")
    rows = await _eval_rows(config)
    assert len(rows) == 20
    assert {r["status"] for r in rows} == {"scored"}


def test_sampling_rate_out_of_range_is_a_config_error(make_config: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[eval\]: key 'sampling_rate'"):
        make_config("[eval]\nsampling_rate = 1.5\n")
    with pytest.raises(ConfigError, match="unknown key 'sample_rate'"):
        make_config("[eval]\nsample_rate = 0.5\n")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("evaluators = ['nope']", "unknown evaluator 'nope'"),
        ("evaluators = ['judge']\nrubric = '@rubrics/missing.md'", "missing.md' does not exist"),
        ("evaluators = ['regex']", "needs `regex"),
        ("evaluators = ['python']\npython = 'no_such_module_x:fn'", "cannot import"),
        ("evaluators = ['json_schema']\njson_schema = '{not json'", "not valid JSON"),
    ],
)
async def test_bad_evaluator_settings_fail_the_start(
    make_config: Any, toml: str, message: str
) -> None:
    config = make_config(f"[eval]\nenabled = true\n{toml}\n")
    runner: Flujo[Any] = Flujo(PIPELINE, config=config)
    # A ConfigError (flujo-core passes user errors from flujo_runtime_started through; older
    # cores wrapped them in a PluginError naming the plugin).
    with pytest.raises((ConfigError, PluginError), match=message):
        await runner.run_async("hello")
    await runner.aclose()


async def test_rubric_file_is_read_relative_to_the_config(make_config: Any, tmp_path: Path) -> None:
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "quality.md").write_text("Shouting is good.")
    config = make_config(
        "[eval]\nenabled = true\nevaluators = ['judge']\nrubric = '@rubrics/quality.md'\n"
        "judge_model = 'openai:gpt-4o-mini'\n"
    )
    async with Flujo(PIPELINE, config=config) as runner:
        await runner.start()
        judge = runner.services[SERVICE].evaluators["judge"]
        assert isinstance(judge, JudgeEvaluator)
        assert judge.rubric == "Shouting is good."


class _Redact:
    """A governance-like policy: lets everything through, scrubs card numbers from sinks."""

    name = "redact_cards"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return value.replace("4111 1111", "[CARD]") if isinstance(value, str) else value


async def test_the_judge_gets_the_redacted_run(make_config: Any, kit: Kit) -> None:
    config = make_config("[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ['judge']\n")
    model = scripted_model({"score": 1.0, "label": "good", "reasoning": "fine"})
    async with Flujo(PIPELINE, config=config, policies=[_Redact()]) as runner:
        await runner.start()
        engine = runner.services[SERVICE]
        engine.evaluators["judge"] = JudgeEvaluator(model, "rubric")  # the scripted judge
        result = await runner.run_async("card 4111 1111")
    assert result.output == "CARD 4111 1111"  # the caller gets the real output
    prompt = model.requests[0].user_prompt or ""
    assert "[CARD]" in prompt
    assert "4111" not in prompt
    (row,) = await _eval_rows(config)
    assert row["status"] == "scored"


async def test_plugin_leaves_workflow_state_unchanged(tmp_path: Path) -> None:
    from flujo_evals.storage import migrations

    async def schema(db: Path, with_plugin: bool) -> list[dict[str, Any]]:
        backend = SQLiteBackend(db)
        await backend.open(migrations("sqlite") if with_plugin else ())
        try:
            return await backend.fetch_all(
                "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'workflow_state' "
                "ORDER BY name"
            )
        finally:
            await backend.close()

    assert await schema(tmp_path / "a.db", True) == await schema(tmp_path / "b.db", False)
    assert await schema(tmp_path / "a.db", True)  # the table is there at all


async def test_evaluations_follow_their_run(make_config: Any) -> None:
    config = make_config(
        "[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ['regex']\nregex = '.'\n"
    )
    async with Flujo(PIPELINE, config=config) as runner:
        result = await runner.run_async("hello")
    from flujo.state import open_state

    state = await open_state(config)
    try:
        assert len(await state.fetch_all("SELECT id FROM evaluations")) == 1
        await state.execute("DELETE FROM workflow_state WHERE run_id = :r", {"r": result.run_id})
        assert await state.fetch_all("SELECT id FROM evaluations") == []  # ON DELETE CASCADE
    finally:
        await state.close()
