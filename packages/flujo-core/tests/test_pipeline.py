"""Building pipelines: composition, names, and type checks at build and run time."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from flujo import (
    Flujo,
    FlujoConfig,
    InputValidationError,
    Pipeline,
    PipelineContext,
    PipelineDefinitionError,
    Step,
)
from flujo.state.sqlite import SQLiteBackend


class Order(BaseModel):
    id: int
    amount: float


def parse(text: str) -> Order:
    return Order.model_validate_json(text)


def total(order: Order) -> float:
    return order.amount


def shout(text: str) -> str:
    return text.upper()


def test_rshift_composes_steps_and_pipelines_in_order() -> None:
    a, b, c = (Step.from_callable(shout, name=n) for n in "abc")
    p = a >> b >> c
    assert isinstance(p, Pipeline)
    assert [s.name for s in p.steps] == ["a", "b", "c"]
    q = a >> (b >> c)
    assert [s.name for s in q.steps] == ["a", "b", "c"]
    assert p.version == q.version


def test_from_callable_reads_types_from_annotations() -> None:
    step = Step.from_callable(parse)
    assert step.name == "parse"
    assert step.input_type is str
    assert step.output_type is Order


def test_type_mismatch_is_an_error_when_the_pipeline_is_built() -> None:
    with pytest.raises(
        PipelineDefinitionError, match="step 'total' outputs float but step 'parse' expects str"
    ):
        Step.from_callable(total) >> Step.from_callable(parse)


def test_compatible_and_unknown_types_are_accepted() -> None:
    def count(text: str) -> int:
        return len(text)

    def half(x: float) -> float:
        return x / 2

    def anything(x):  # type: ignore[no-untyped-def]
        return x

    def as_dict(text: str) -> dict[str, Any]:
        return {"id": 1, "amount": float(len(text))}

    widened = Step.from_callable(count) >> Step.from_callable(half)  # int feeds float
    untyped = Step.from_callable(count) >> Step.from_callable(anything) >> Step.from_callable(shout)
    as_model = Step.from_callable(as_dict) >> Step.from_callable(total)  # a dict may be an Order
    assert [s.name for s in widened.steps] == ["count", "half"]
    assert [s.name for s in untyped.steps] == ["count", "anything", "shout"]
    assert [s.name for s in as_model.steps] == ["as_dict", "total"]
    assert (widened.steps[0].output_type, widened.steps[1].input_type) == (int, float)


def test_duplicate_step_names_and_bad_agents_are_rejected() -> None:
    with pytest.raises(PipelineDefinitionError, match="two steps are named 'shout'"):
        Step.from_callable(shout) >> Step.from_callable(shout)
    with pytest.raises(PipelineDefinitionError, match="has no run"):
        Step("x", object())  # type: ignore[arg-type]
    with pytest.raises(PipelineDefinitionError, match="at least one step"):
        Pipeline([])
    with pytest.raises(PipelineDefinitionError, match="max_retries"):
        Step.from_callable(shout, max_retries=-1)


async def test_inputs_are_validated_and_coerced_at_run_time(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    seen: list[Order] = []

    def keep(order: Order) -> float:
        seen.append(order)
        return order.amount

    def untyped(x):  # type: ignore[no-untyped-def]
        return {"id": "7", "amount": "2.5"}

    pipeline = Step.from_callable(untyped) >> Step.from_callable(keep)
    async with Flujo(pipeline, config=config, state=state) as runner:
        result = await runner.run_async("anything")
        assert result.succeeded
        assert result.output == 2.5
        assert seen == [Order(id=7, amount=2.5)]

        # JSON text validates into a structured first-step input (what the CLI passes).
        first = Pipeline([Step.from_callable(keep, name="keep2")])
        async with Flujo(first, config=config, state=state) as r2:
            assert (await r2.run_async('{"id": 1, "amount": 4}')).output == 4.0


async def test_bad_first_input_raises_and_stores_nothing(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    pipeline = Pipeline([Step.from_callable(total)])
    async with Flujo(pipeline, config=config, state=state) as runner:
        with pytest.raises(InputValidationError, match="input to step 'total' does not validate"):
            await runner.run_async("not an order")
        assert await state.list_runs() == []


async def test_bad_intermediate_output_fails_the_run_with_a_clear_error(
    config: FlujoConfig, state: SQLiteBackend
) -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return {"id": "seven"}

    pipeline = Step.from_callable(untyped) >> Step.from_callable(total)
    async with Flujo(pipeline, config=config, state=state) as runner:
        result = await runner.run_async("x")
    assert result.status.value == "failed"
    assert result.error is not None
    assert "input to step 'total' does not validate as Order" in result.error
    stored = await _reopen(state, result.run_id)
    assert stored.status.value == "failed"
    assert stored.error == result.error
    assert [s.status.value for s in stored.steps] == ["succeeded", "failed"]


async def _reopen(state: SQLiteBackend, run_id: str):  # type: ignore[no-untyped-def]
    fresh = SQLiteBackend(state.path)
    await fresh.open()
    try:
        run = await fresh.get_run(run_id)
        assert run is not None
        return run
    finally:
        await fresh.close()


def test_context_model_is_inferred_from_step_annotations() -> None:
    class Ctx(PipelineContext):
        n: int = 0

    def step(x: str, context: Ctx) -> str:
        return x

    runner: Flujo[Any] = Flujo(Pipeline([Step.from_callable(step)]), config=FlujoConfig())
    assert runner.context_model is Ctx
