"""The judge over real HTTP: pydantic-ai's OpenAI provider talking to the fake server."""

from __future__ import annotations

from typing import Any

from flujo import Flujo, Pipeline, Step
from flujo.testing.fake_openai import FakeOpenAIServer
from flujo_evals.engine import SERVICE


def answer(text: str) -> str:
    return text.upper()


PIPELINE = Pipeline([Step.from_callable(answer, name="answer")], name="shout")
TOML = (
    "[eval]\nenabled = true\nsampling_rate = 1.0\nevaluators = ['judge']\n"
    "judge_model = 'openai-chat:gpt-4o-mini'\nrubric = 'Shouting is good.'\nmax_retries = 0\n"
)


async def test_judge_over_http_scores_runs(make_config: Any, fake_openai: FakeOpenAIServer) -> None:
    fake_openai.queue(
        {"score": 0.9, "label": "loud", "reasoning": "all caps"},
        {"score": 0.4, "label": "meh", "reasoning": "short"},
    )
    config = make_config(TOML)
    async with Flujo(PIPELINE, config=config) as runner:
        first = await runner.run_async("hello there")
        second = await runner.run_async("hi")
        state = runner.runtime.state
        await runner.services[SERVICE].flush()
        rows = await state.fetch_all("SELECT * FROM evaluations")
    assert {r["run_id"] for r in rows} == {first.run_id, second.run_id}
    assert sorted((r["score"], r["label"]) for r in rows) == [(0.4, "meh"), (0.9, "loud")]
    assert all(r["judge_model"] == "openai-chat:gpt-4o-mini" for r in rows)
    assert all(r["tokens"] == 15 and r["status"] == "scored" for r in rows)
    assert [r.path for r in fake_openai.requests] == ["/v1/chat/completions"] * 2
    body = fake_openai.requests[0].body
    assert "Shouting is good." in str(body["messages"])
    assert any(t["function"]["name"].startswith("final_result") for t in body["tools"])


async def test_judge_http_errors_are_recorded_not_scored(
    make_config: Any, fake_openai: FakeOpenAIServer
) -> None:
    # No reply queued: the fake answers HTTP 400, which the client does not retry.
    config = make_config(TOML)
    async with Flujo(PIPELINE, config=config) as runner:
        result = await runner.run_async("hello")
        assert result.succeeded  # a failing judge never touches the run
    from flujo.state import open_state

    state = await open_state(config)
    try:
        (row,) = await state.fetch_all("SELECT * FROM evaluations")
    finally:
        await state.close()
    assert row["status"] == "judge_error"
    assert row["score"] is None
    assert "400" in row["reasoning"]


async def test_unreachable_judge_is_recorded_and_opens_the_breaker(
    make_config: Any, monkeypatch: Any
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    # One worker, so calls are sequential: with several, calls already in flight when the
    # breaker opens still finish (and are recorded as judge_error too).
    config = make_config(TOML + "circuit_breaker_threshold = 1\nconcurrency = 1\n")
    async with Flujo(PIPELINE, config=config) as runner:
        results = [await runner.run_async(f"hello {i}") for i in range(3)]
        assert all(r.succeeded for r in results)
    from flujo.state import open_state

    state = await open_state(config)
    try:
        rows = await state.fetch_all("SELECT status, score, reasoning FROM evaluations")
    finally:
        await state.close()
    statuses = [r["status"] for r in rows]
    assert statuses.count("judge_error") == 1
    assert statuses.count("skipped_circuit") == 2
    assert all(r["score"] is None for r in rows)
    assert any("Connection error" in r["reasoning"] for r in rows)
