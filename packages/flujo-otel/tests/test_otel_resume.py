"""A paused run's trace: its run span ends at the pause (a gap, not an open span), and the
resume continues the same trace under the first run span."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flujo_otel.ids import root_span_id_of, trace_id_hex, trace_id_of
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flujo import Flujo, Pipeline, RunStatus, Step
from flujo.testing.cli import run_flujo


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


async def test_runs_show_gives_the_trace_id(
    make_config: Any, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """The stored run names its trace (flujo-ui links it): ``flujo runs show`` with the
    installed plugin and the same ``flujo.toml``."""
    config = make_config('[otel]\nenabled = true\nsample_ratio = 1.0\nservice_name = "desk"\n')
    pipeline = Pipeline([Step.from_callable(first)], name="ship")
    async with Flujo(pipeline, config=config) as runner:
        done = await runner.run_async("box")
    env = {"FLUJO_LOAD_PLUGINS": "flujo-otel"}
    shown = run_flujo("runs", "show", done.run_id, "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    section = json.loads(shown.stdout)["sections"]["flujo-otel"]
    assert section["fields"] == {
        "trace id": trace_id_hex(done.run_id),
        "sampled": "yes",
        "service": "desk",
    }
    assert {s.context.trace_id for s in exporter.get_finished_spans()} == {
        int(section["fields"]["trace id"], 16)
    }
