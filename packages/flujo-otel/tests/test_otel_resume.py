"""A paused run's trace: its run span ends at the pause (a gap, not an open span), and the
resume continues the same trace under the first run span."""

from __future__ import annotations

from typing import Any

from flujo_otel.ids import root_span_id_of, trace_id_of
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flujo import Flujo, Pipeline, RunStatus, Step


def first(text: str) -> str:
    return text + "!"


def last(text: str) -> str:
    return text + "?"


async def test_a_resumed_run_continues_its_trace_after_a_gap(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    pipeline = Pipeline(
        [Step.from_callable(first), Step.human("check"), Step.from_callable(last)], name="ship"
    )
    config = make_config()
    async with Flujo(pipeline, config=config) as runner:
        paused = await runner.run_async("box")
        assert paused.status is RunStatus.PAUSED
    before = list(exporter.get_finished_spans())
    # The pause ended the run span: nothing is left open while the run waits.
    assert sorted(s.name for s in before) == ["run ship", "step check", "step first"]
    async with Flujo(pipeline, config=config) as runner:  # another runner, as after a restart
        await runner.approve_async(paused.run_id)
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    spans = list(exporter.get_finished_spans())
    assert {s.context.trace_id for s in spans} == {trace_id_of(paused.run_id)}
    runs = sorted((s for s in spans if s.name == "run ship"), key=lambda s: s.start_time or 0)
    assert len(runs) == 2
    first_run, resumed = runs
    assert first_run.parent is None
    assert first_run.context.span_id == root_span_id_of(paused.run_id)
    assert resumed.parent is not None
    assert resumed.parent.span_id == first_run.context.span_id
    assert resumed.attributes["flujo.run.resumed"] is True
    assert first_run.attributes["flujo.run.status"] == "paused"
    assert (first_run.end_time or 0) <= (resumed.start_time or 0)  # the wait is a gap
    ids = {s.context.span_id for s in spans}
    assert all(s.parent is None or s.parent.span_id in ids for s in spans)
    assert [s.name for s in spans if s.parent is None] == ["run ship"]
